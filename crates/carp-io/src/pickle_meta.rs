//! The fields of an `argparse.Namespace` saved in a checkpoint (the CARP release stores its
//! training arguments under `args`), which [`pytorch_reader`] reads as an opaque object.
//!
//! A deliberately small pickle machine: it builds plain values, and records every Python
//! callable (`GLOBAL`, `REDUCE`, `NEWOBJ`, `BUILD`) as an inert object with its arguments and
//! state, never calling anything. Persistent ids (tensor storages) become placeholders, so no
//! tensor data is read. Best effort: any opcode outside what `torch.save` writes ends the
//! attempt and the arguments stay unread (the weights do not depend on this).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

#[derive(Clone, Debug)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    /// A class or function named by `GLOBAL`; never resolved.
    Global(String),
    /// An instance of a class, with the state `BUILD` gave it.
    Object(String, Option<Box<V>>),
    /// Anything else (bytes, storages, call results).
    Opaque,
    Mark,
}

impl V {
    fn render(&self) -> Option<String> {
        Some(match self {
            V::None => "None".into(),
            V::Bool(b) => if *b { "True" } else { "False" }.into(),
            V::Int(i) => i.to_string(),
            V::Float(f) => f.to_string(),
            V::Str(s) => s.clone(),
            V::List(items) => {
                let parts: Option<Vec<String>> = items.iter().map(V::render).collect();
                format!("[{}]", parts?.join(", "))
            }
            _ => return None,
        })
    }
}

/// Bounds so a hostile pickle cannot make this allocate without limit.
const MAX_ITEMS: usize = 1 << 22;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    memo: BTreeMap<u64, V>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn line(&mut self) -> Option<String> {
        let rest = self.data.get(self.pos..)?;
        let n = rest.iter().position(|&b| b == b'\n')?;
        self.pos += n + 1;
        Some(String::from_utf8_lossy(&rest[..n]).into_owned())
    }
    fn pop(&mut self) -> Option<V> {
        self.stack.pop()
    }
    fn pop_mark(&mut self) -> Option<Vec<V>> {
        let at = self.stack.iter().rposition(|v| matches!(v, V::Mark))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Some(items)
    }
    fn push(&mut self, v: V) -> Option<()> {
        (self.stack.len() < MAX_ITEMS).then(|| self.stack.push(v))
    }
    fn str(&mut self, n: usize) -> Option<V> {
        Some(V::Str(String::from_utf8_lossy(self.take(n)?).into_owned()))
    }
    fn long(&mut self, n: usize) -> Option<V> {
        let b = self.take(n)?;
        if b.len() > 8 {
            return Some(V::Opaque);
        }
        let mut buf = if b.last().is_some_and(|x| x & 0x80 != 0) {
            [0xff; 8]
        } else {
            [0; 8]
        };
        buf[..b.len()].copy_from_slice(b);
        Some(V::Int(i64::from_le_bytes(buf)))
    }

    /// Runs one pickle to its `STOP`; `None` on anything it does not handle.
    fn run(&mut self) -> Option<V> {
        loop {
            let op = self.byte()?;
            match op {
                0x80 => {
                    self.byte()?; // PROTO
                }
                0x95 => {
                    self.u64()?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.push(V::Mark)?,
                b'}' => self.push(V::Dict(Vec::new()))?,
                b']' | 0x8f => self.push(V::List(Vec::new()))?, // EMPTY_LIST, EMPTY_SET
                b')' => self.push(V::List(Vec::new()))?,
                b't' | 0x91 => {
                    let items = self.pop_mark()?; // TUPLE, FROZENSET
                    self.push(V::List(items))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let at = self.stack.len().checked_sub(n)?;
                    let items = self.stack.split_off(at);
                    self.push(V::List(items))?;
                }
                b'q' => {
                    let i = self.byte()? as u64;
                    self.memo.insert(i, self.stack.last()?.clone());
                }
                b'r' => {
                    let i = self.u32()? as u64;
                    self.memo.insert(i, self.stack.last()?.clone());
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.memo.insert(i, self.stack.last()?.clone());
                }
                b'p' => {
                    let i = self.line()?.parse().ok()?;
                    self.memo.insert(i, self.stack.last()?.clone());
                }
                b'h' => {
                    let i = self.byte()? as u64;
                    let v = self.memo.get(&i)?.clone();
                    self.push(v)?;
                }
                b'j' => {
                    let i = self.u32()? as u64;
                    let v = self.memo.get(&i)?.clone();
                    self.push(v)?;
                }
                b'g' => {
                    let i = self.line()?.parse().ok()?;
                    let v = self.memo.get(&i)?.clone();
                    self.push(v)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().ok()?);
                    self.push(V::Int(v as i64))?;
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push(V::Int(v as i64))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
                    self.push(V::Int(v as i64))?;
                }
                0x8a => {
                    let n = self.byte()? as usize;
                    let v = self.long(n)?;
                    self.push(v)?;
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    let v = self.long(n)?;
                    self.push(v)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().ok()?);
                    self.push(V::Float(v))?;
                }
                b'I' => {
                    let l = self.line()?;
                    let v = match l.as_str() {
                        "00" => V::Bool(false),
                        "01" => V::Bool(true),
                        s => V::Int(s.parse().ok()?),
                    };
                    self.push(v)?;
                }
                b'F' => {
                    let v = self.line()?.parse().ok()?;
                    self.push(V::Float(v))?;
                }
                b'N' => self.push(V::None)?,
                0x88 => self.push(V::Bool(true))?,
                0x89 => self.push(V::Bool(false))?,
                b'X' | b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.str(n)?;
                    self.push(v)?;
                }
                0x8c | b'U' => {
                    let n = self.byte()? as usize;
                    let v = self.str(n)?;
                    self.push(v)?;
                }
                0x8d | 0x8e => {
                    let n = usize::try_from(self.u64()?).ok()?;
                    self.take(n)?;
                    self.push(V::Opaque)?;
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(V::Opaque)?;
                }
                b'C' => {
                    let n = self.byte()? as usize;
                    self.take(n)?;
                    self.push(V::Opaque)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(V::Global(format!("{module}.{name}")))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (V::Str(m), V::Str(n)) = (module, name) else {
                        return None;
                    };
                    self.push(V::Global(format!("{m}.{n}")))?;
                }
                // REDUCE / NEWOBJ: an instance of the named class; nothing is called.
                b'R' | 0x81 => {
                    self.pop()?;
                    let class = match self.pop()? {
                        V::Global(name) => name,
                        _ => String::new(),
                    };
                    self.push(V::Object(class, None))?;
                }
                0x92 => {
                    self.pop()?;
                    self.pop()?;
                    let class = match self.pop()? {
                        V::Global(name) => name,
                        _ => String::new(),
                    };
                    self.push(V::Object(class, None))?;
                }
                b'b' => {
                    let state = self.pop()?;
                    match self.stack.last_mut()? {
                        V::Object(_, s) => *s = Some(Box::new(state)),
                        V::Dict(items) => {
                            if let V::Dict(more) = state {
                                items.extend(more);
                            }
                        }
                        _ => {}
                    }
                }
                b'Q' => {
                    self.pop()?; // BINPERSID: a storage reference
                    self.push(V::Opaque)?;
                }
                b'P' => {
                    self.line()?;
                    self.push(V::Opaque)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    if let V::List(items) = self.stack.last_mut()? {
                        items.push(v);
                    }
                }
                b'e' | 0x90 => {
                    let vs = self.pop_mark()?;
                    if let V::List(items) = self.stack.last_mut()? {
                        items.extend(vs);
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let V::Dict(items) = self.stack.last_mut()? {
                        items.push((k, v));
                    }
                }
                b'u' => {
                    let vs = self.pop_mark()?;
                    if let V::Dict(items) = self.stack.last_mut()? {
                        let mut it = vs.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            items.push((k, v));
                        }
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.stack.last()?.clone();
                    self.push(v)?;
                }
                _ => return None,
            }
        }
    }
}

/// `{name}.{field}` -> value for each `argparse.Namespace` at the top level of the pickle.
fn namespaces(root: &V) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let V::Dict(items) = root else {
        return out;
    };
    for (k, v) in items {
        let (V::Str(name), V::Object(class, Some(state))) = (k, v) else {
            continue;
        };
        let V::Dict(fields) = state.as_ref() else {
            continue;
        };
        if class != "argparse.Namespace" {
            continue;
        }
        for (f, value) in fields {
            if let (V::Str(f), Some(text)) = (f, value.render()) {
                out.insert(format!("{name}.{f}"), text);
            }
        }
    }
    out
}

/// The main pickle of a checkpoint: `data.pkl` of a zip, or the 4th pickle of a legacy
/// stream (after the magic number, protocol version and system info).
fn main_pickle(path: &Path) -> Option<V> {
    let mut head = [0u8; 4];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if &head == b"PK\x03\x04" {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(path).ok()?).ok()?;
        let name = zip
            .file_names()
            .filter_map(Result::ok)
            .find(|n| n.ends_with("data.pkl"))?
            .to_string();
        let entry = zip.by_name(&name).ok()?;
        let mut data = Vec::new();
        entry
            .take(pytorch_reader::MAX_PICKLE_SIZE)
            .read_to_end(&mut data)
            .ok()?;
        let mut m = Machine {
            data: &data,
            pos: 0,
            stack: Vec::new(),
            memo: BTreeMap::new(),
        };
        m.run()
    } else {
        let data = std::fs::read(path).ok()?;
        let mut m = Machine {
            data: &data,
            pos: 0,
            stack: Vec::new(),
            memo: BTreeMap::new(),
        };
        for _ in 0..3 {
            m.run()?;
            m.stack.clear();
            m.memo.clear();
        }
        m.run()
    }
}

/// The fields of the top-level `argparse.Namespace` entries (`args.arch` -> `resnet50`);
/// empty when there are none or the pickle is outside what this reader handles.
pub fn namespace_fields(path: &Path) -> BTreeMap<String, String> {
    main_pickle(path)
        .map(|root| namespaces(&root))
        .unwrap_or_default()
}
