//! `mamut-import-sim`: a stand-in for Mamut's import program (`Mamut ImportExport.exe`)
//! importing GBAOX10 order files into a mamut-sim PostgreSQL schema, for tests. It is not
//! Mamut; see the crate's documentation (`src/lib.rs`) for what it follows from the documentation, what it decides
//! where the documentation is silent, its environment variables and its exit codes.
//!
//! `mamut-import-sim IO <client> <file> <CompareKey> <UserID> .F.`

fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let outcome = mamut_import_sim::run(&args, mamut_import_sim::Settings::from_env());
    for line in &outcome.stdout {
        println!("{line}");
    }
    for line in &outcome.stderr {
        eprintln!("{line}");
    }
    std::process::exit(outcome.code);
}
