//! The `governance-engine` binary; everything lives in the library.

/// mimalloc rather than the system allocator: the service allocates and frees per request
/// (JSON values, records, HTTP buffers) on many threads at once, where glibc's malloc cost
/// about a fifth of its CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    governance_engine::cli::main()
}
