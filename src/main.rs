//! The `socialgate` binary: parse arguments, set up tracing, run a command,
//! map the outcome to an exit code.

fn main() -> std::process::ExitCode {
    socialgate::cli::main()
}
