//! The `kith` binary: a thin shell over `kith_node::cli`.

fn main() -> std::process::ExitCode {
    kith_node::cli::main()
}
