fn main() -> std::process::ExitCode {
    autonoma_common::run_service(logging::build)
}
