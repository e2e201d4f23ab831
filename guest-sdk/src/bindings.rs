//! Guest bindings for `wit/`: the SDK's one `wit_bindgen::generate!`.
//! `wasi:io` maps onto the `wasip2` types the executor polls.
#![allow(missing_docs)]

#[cfg(not(feature = "wasip3"))]
wit_bindgen::generate!({
    path: "../wit",
    world: "cyclone:platform/sdk",
    with: {
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:keyvalue/store@0.2.0-draft2": generate,
        "wasi:keyvalue/atomics@0.2.0-draft2": generate,
        "wasi:keyvalue/batch@0.2.0-draft2": generate,
    },
    pub_export_macro: true,
    export_macro_name: "export_websocket_handler",
    default_bindings_module: "::cyclone_sdk::__private::bindings",
});

#[cfg(feature = "wasip3")]
wit_bindgen::generate!({
    path: "../wit",
    world: "cyclone:platform/sdk-p3",
    with: {
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:keyvalue/store@0.2.0-draft2": generate,
        "wasi:keyvalue/atomics@0.2.0-draft2": generate,
        "wasi:keyvalue/batch@0.2.0-draft2": generate,
    },
    default_bindings_module: "::cyclone_sdk::__private::bindings",
});
