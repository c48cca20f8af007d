fn main() {
    println!("slipway");
}
