//! Synthetic SCIP indexes for tests: documents, occurrences and symbol information naming
//! symbols of every form of the grammar, encoded by hand with `prost`'s wire helpers.

/// A length-delimited field.
pub(crate) fn field(number: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(value.len() as u64, &mut out);
    out.extend_from_slice(value);
    out
}

/// A varint field.
pub(crate) fn varint_field(number: u32, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(number, prost::encoding::WireType::Varint, &mut out);
    prost::encoding::encode_varint(value, &mut out);
    out
}

/// A symbol of one of the grammar's forms, at `version`.
pub(crate) fn symbol(form: u8, version: &str, n: usize) -> String {
    match form % 6 {
        0 => format!("scip-typescript npm @vue/runtime-core {version} src/`f{n}.ts`/g{n}()."),
        1 => format!("scip-python python sqlalchemy {version} sqlalchemy.orm/C{n}#m()."),
        2 => format!("rust-analyzer cargo serde {version} de/T{n}#"),
        3 => format!("local {n}"),
        4 => format!("scip-go gomod my  mod {version} pkg/F{n}()."),
        _ => format!("semanticdb maven . . java/lang/S{n}#"),
    }
}

/// A document with occurrences and symbol information naming symbols of every form.
pub(crate) fn document(path: &str, version: &str, symbols: usize, extra: &[u8]) -> Vec<u8> {
    let mut doc = field(1, path.as_bytes());
    doc.extend(field(4, b"python"));
    for n in 0..symbols {
        let s = symbol((n % 6) as u8, version, n);
        let mut occ = field(1, &[1, 2, 3]);
        occ.extend(field(2, s.as_bytes()));
        occ.extend(varint_field(3, 1));
        doc.extend(field(2, &occ));
        if n % 3 == 0 {
            let mut info = field(1, s.as_bytes());
            info.extend(field(3, b"docs"));
            info.extend(field(
                4,
                &field(1, symbol((n % 6) as u8 + 1, version, n + 1).as_bytes()),
            ));
            info.extend(field(8, symbol((n % 6) as u8 + 2, version, 0).as_bytes()));
            let sig = field(2, &field(2, symbol((n % 6) as u8, version, n).as_bytes()));
            info.extend(field(7, &sig));
            doc.extend(field(3, &info));
        }
    }
    doc.extend(varint_field(99, 7));
    doc.extend_from_slice(extra);
    field(2, &doc)
}

/// An index: metadata, documents (sizes given in symbols), external symbols.
pub(crate) fn index(version: &str, docs: &[usize], externals: usize) -> Vec<u8> {
    let mut out = field(1, &field(3, b"file:///project"));
    for (i, &n) in docs.iter().enumerate() {
        out.extend(document(&format!("src/f{i}.py"), version, n, &[]));
    }
    for n in 0..externals {
        out.extend(field(
            3,
            &field(1, symbol(1, version, 10_000 + n).as_bytes()),
        ));
    }
    out
}
