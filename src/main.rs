//! The `cutover` executable. The program is the library's `cutover::main` (src/lib.rs), which
//! returns the exit code instead of exiting, so everything it holds (the runtime, the run lock,
//! the log writers) is dropped first; this only exits with that code.

fn main() {
    std::process::exit(cutover::main());
}
