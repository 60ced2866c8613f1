//! `test-wrong-world`: a valid component of an unknown world (`test:other/other`, exporting
//! `run: func() -> string`), so the host must refuse to install it.

// Its only public items are the bindings wit-bindgen generates, which carry no docs.
#![allow(missing_docs)]

wit_bindgen::generate!({
    world: "other",
    path: "wit",
});

struct Other;

impl Guest for Other {
    fn run() -> String {
        "not a posbridge plugin".into()
    }
}

export!(Other);
