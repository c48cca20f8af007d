//! Bytecode layers: `.pyc` compiled by a CPython of the base's minor version,
//! with the runtime path embedded, in unchecked-hash mode and a fixed order.
