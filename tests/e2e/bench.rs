//! A smoke run of every benchmark with tiny sizes: they run and report a figure for each row.
//! (The measurements themselves are made with `bench` in release mode; see docs/benchmarks.md.)

use tests::process::bin_path;

#[tokio::test]
async fn every_benchmark_runs_with_tiny_sizes() {
    let output = tokio::process::Command::new(bin_path("bench"))
        .arg("--quick")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for id in ["B1", "B2", "B3", "B4", "B5", "B6", "B7"] {
        assert!(
            stdout.contains(&format!("| {id} |")),
            "no {id} row in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("INCOMPLETE"), "{stdout}");
}
