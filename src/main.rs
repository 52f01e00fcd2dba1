//! Parses the command line and dispatches; everything else lives in the library.

fn main() -> std::process::ExitCode {
    data_backup::cli::main()
}
