// Re-embed the migrations whenever a file under migrations/ changes.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
