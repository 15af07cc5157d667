// `sqlx::migrate!` embeds `migrations/` at compile time; rebuild when a migration changes
// (cargo does not watch the folder by itself).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
