//! Embeds `runbooks/*.rhai` and `stdlib/*.rhai` in the binary, so a fresh install can run every
//! procedure without the source tree; files on disk still override them at run time.

use std::{env, fs, path::Path};

fn main() {
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("embedded.rs");
    let root = env::var("CARGO_MANIFEST_DIR").unwrap();
    let mut code = String::new();
    for (constant, dir) in [("RUNBOOKS", "runbooks"), ("STDLIB", "stdlib")] {
        let dir = Path::new(&root).join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.retain(|path| path.extension().is_some_and(|ext| ext == "rhai"));
        entries.sort();
        code.push_str(&format!("pub static {constant}: &[(&str, &str)] = &[\n"));
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy();
            code.push_str(&format!(
                "    ({name:?}, include_str!({:?})),\n",
                path.display().to_string()
            ));
        }
        code.push_str("];\n");
    }
    fs::write(out, code).unwrap();
}
