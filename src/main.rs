//! The `governance-engine` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    governance_engine::cli::main()
}
