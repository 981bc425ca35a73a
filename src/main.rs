fn main() {
    std::process::exit(cutover::main());
}
