//! `test-wrong-world`: a valid component of an unknown world (`test:other/other`, exporting
//! `run: func() -> string`), so the host must refuse to install it.

// Its only public items are the bindings wit-bindgen generates, which carry no docs.
#![allow(missing_docs)]

wit_bindgen::generate!({
    world: "other",
    path: "wit",
});

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Other;

impl Guest for Other {
    fn run() -> String {
        "not a posbridge plugin".into()
    }
}

// Natively (`cargo test --workspace`) the raw exports' symbol names (`…@0.1.0#info`) do not
// link into a shared library; only the wasm build exports them.
#[cfg(target_arch = "wasm32")]
export!(Other);
