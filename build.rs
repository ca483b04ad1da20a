// The built-in roles and templates are embedded with include_dir!, which
// does not tell cargo about files added later; these lines do.
fn main() {
    println!("cargo:rerun-if-changed=roles");
    println!("cargo:rerun-if-changed=templates");
}
