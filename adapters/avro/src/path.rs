//! Where in a value an error happened, rendered as a JSON pointer (`/a/0/b`).

use std::fmt;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    Root,
    Field(&'a str),
    Index(usize),
}

/// A path from the root, built on the stack and rendered only on error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

impl<'a> Path<'a> {
    pub(crate) const ROOT: Path<'static> = Path {
        parent: None,
        seg: Seg::Root,
    };

    pub(crate) fn field(&'a self, name: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Field(name),
        }
    }

    pub(crate) fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            segs.push(p.seg);
            cur = p.parent;
        }
        let mut wrote = false;
        for seg in segs.iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Field(name) => {
                    write!(f, "/{name}")?;
                    wrote = true;
                }
                Seg::Index(i) => {
                    write!(f, "/{i}")?;
                    wrote = true;
                }
            }
        }
        if !wrote {
            f.write_str("/")?;
        }
        Ok(())
    }
}
