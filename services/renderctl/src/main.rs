use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = renderctl::cli::Cli::parse();
    match cli.command.and_then(renderctl::cli::run) {
        Some(code) => code,
        None => autonoma_common::run_service(renderctl::build),
    }
}
