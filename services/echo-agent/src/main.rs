fn main() -> std::process::ExitCode {
    autonoma_common::run_service(echo_agent::build)
}
