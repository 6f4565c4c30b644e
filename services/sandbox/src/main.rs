fn main() -> std::process::ExitCode {
    autonoma_common::run_service(sandbox::build)
}
