//! The `sentinella` binary: everything lives in the library; see `sentinella::cli`.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    sentinella::cli::main()
}
