//! The tools' command lines: each binary starts and describes itself, and `shop-sim` refuses to
//! serve without an API key. (Being this package's integration test also makes `cargo test`
//! build the binaries, which the end-to-end suite runs from `target/`.)

use std::process::{Command, Output};

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .env_remove("SHOP_SIM_API_KEY")
        .output()
        .unwrap_or_else(|e| panic!("{binary} runs: {e}"))
}

#[test]
fn every_tool_answers_help_with_what_it_is() {
    for (binary, words) in [
        (env!("CARGO_BIN_EXE_mamut-sim"), "TDS stand-in"),
        (
            env!("CARGO_BIN_EXE_shop-sim"),
            "Stand-in for the shop's API",
        ),
        (
            env!("CARGO_BIN_EXE_bench"),
            "Benchmarks of the relay and agent",
        ),
    ] {
        let output = run(binary, &["--help"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{binary} --help: {output:?}");
        assert!(stdout.contains(words), "{binary} --help: {stdout}");
    }
}

#[test]
fn shop_sim_will_not_serve_without_an_api_key() {
    let output = run(env!("CARGO_BIN_EXE_shop-sim"), &["--listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "shop-sim served: {output:?}");
    assert!(stderr.contains("--api-key"), "stderr: {stderr}");
}
