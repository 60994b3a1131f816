//! The `mamut-import-sim` binary as the agent runs it: its exit codes and the line it writes,
//! before any database is involved. (Also what makes `cargo test` build the binary that the
//! end-to-end tests start.)

use std::process::{Command, Output};

fn run(args: &[&str], file: Option<&[u8]>) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("order.xml");
    if let Some(bytes) = file {
        std::fs::write(&path, bytes).expect("write the file");
    }
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{file}", &path.display().to_string()))
        .collect();
    Command::new(env!("CARGO_BIN_EXE_mamut-import-sim"))
        .args(&args)
        .env("MAMUT_IMPORT_SIM_PG_SCHEMA", "unused")
        .env_remove("MAMUT_IMPORT_SIM_CLIENTS")
        .output()
        .expect("mamut-import-sim runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn wrong_parameters_exit_2_with_the_usage() {
    let output = run(&["IO", "001", "{file}"], None);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("six arguments, 3 given"),
        "{}",
        stderr(&output)
    );

    let output = run(&["IO", "002", "{file}", "1", "1", ".F."], Some(b""));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("client 002 not found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_file_against_the_documented_format_exits_1_naming_the_problem() {
    let lower_case = b"<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\r\n\
        <gbaox10><ORDERLIST></ORDERLIST></gbaox10>";
    let output = run(&["IO", "001", "{file}", "1", "1", ".F."], Some(lower_case));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let line = stderr(&output);
    assert!(
        line.starts_with("GBAOX10 ") && line.contains("gbaox10"),
        "{line}"
    );
    assert!(output.stdout.is_empty());
}
