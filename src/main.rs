//! The `slipway` command: thin wrappers that validate input, build options
//! and call the library (see `cli.rs` for the arguments).

mod cli;

use slipway::sanitize::escape_lines;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any thread starts: no child process inherits registry secrets.
    slipway::registry::credentials::capture_env();
    let args = <cli::Cli as clap::Parser>::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(cli::run(args));
    slipway::progress::finish_current(); // no spinner left drawing over the error
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", escape_lines(&error.message));
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  Caused by: {}", escape_lines(&cause.to_string()));
                source = cause.source();
            }
            if let Some(hint) = &error.hint {
                eprintln!("hint: {}", escape_lines(hint));
            }
            ExitCode::from(error.exit_code() as u8)
        }
    }
}
