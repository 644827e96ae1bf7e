fn main() {
    println!("writer-sync {}", env!("CARGO_PKG_VERSION"));
}
