//! A small, strict DER reader for the KeyDescription extension (X.690 §8, §10).
//!
//! Definite lengths only, minimal length encodings, no trailing bytes. Tag
//! numbers in high-tag-number form (the AuthorizationList uses context tags up
//! to 723) are supported. Every failure names the schema field being read.

use super::KeyDescriptionError;

/// ASN.1 tag class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Universal,
    Context,
    Other,
}

/// One TLV.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub class: Class,
    pub constructed: bool,
    pub number: u32,
    pub value: &'a [u8],
}

pub(crate) const INTEGER: u32 = 2;
pub(crate) const OCTET_STRING: u32 = 4;
pub(crate) const NULL: u32 = 5;
pub(crate) const BOOLEAN: u32 = 1;
pub(crate) const ENUMERATED: u32 = 10;
pub(crate) const SEQUENCE: u32 = 16;
pub(crate) const SET: u32 = 17;

fn err(field: &'static str, reason: &'static str) -> KeyDescriptionError {
    KeyDescriptionError::Malformed { field, reason }
}

/// A cursor over consecutive TLVs.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    field: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], field: &'static str) -> Self {
        Self { rest: bytes, field }
    }

    /// Names the schema field read next (for error messages).
    pub fn at(&mut self, field: &'static str) -> &mut Self {
        self.field = field;
        self
    }

    pub fn field(&self) -> &'static str {
        self.field
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads the next TLV.
    pub fn next_tlv(&mut self) -> Result<Tlv<'a>, KeyDescriptionError> {
        let f = self.field;
        let (&first, mut rest) = self.rest.split_first().ok_or(err(f, "truncated"))?;
        let class = match first >> 6 {
            0 => Class::Universal,
            2 => Class::Context,
            _ => Class::Other,
        };
        let constructed = first & 0x20 != 0;
        let mut number = u32::from(first & 0x1f);
        if number == 0x1f {
            number = 0;
            let mut first_byte = true;
            loop {
                let (&b, r) = rest.split_first().ok_or(err(f, "truncated tag"))?;
                rest = r;
                if first_byte && b == 0x80 {
                    return Err(err(f, "non-minimal tag"));
                }
                first_byte = false;
                if number > (u32::MAX >> 7) {
                    return Err(err(f, "tag number too large"));
                }
                number = (number << 7) | u32::from(b & 0x7f);
                if b & 0x80 == 0 {
                    break;
                }
            }
            if number < 0x1f {
                return Err(err(f, "non-minimal tag"));
            }
        }
        let (&l, r) = rest.split_first().ok_or(err(f, "truncated length"))?;
        rest = r;
        let len = if l < 0x80 {
            usize::from(l)
        } else if l == 0x80 {
            return Err(err(f, "indefinite length"));
        } else {
            let n = usize::from(l & 0x7f);
            if n > 4 || rest.len() < n {
                return Err(err(f, "bad length"));
            }
            let (bytes, r) = rest.split_at(n);
            rest = r;
            if bytes.first() == Some(&0) {
                return Err(err(f, "non-minimal length"));
            }
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return Err(err(f, "non-minimal length"));
            }
            len
        };
        if rest.len() < len {
            return Err(err(f, "truncated value"));
        }
        let (value, r) = rest.split_at(len);
        self.rest = r;
        Ok(Tlv {
            class,
            constructed,
            number,
            value,
        })
    }

    /// Reads the next TLV, which must be the universal type `number`.
    pub fn expect(&mut self, number: u32) -> Result<&'a [u8], KeyDescriptionError> {
        let tlv = self.next_tlv()?;
        let constructed = matches!(number, SEQUENCE | SET);
        if tlv.class != Class::Universal || tlv.number != number || tlv.constructed != constructed {
            return Err(err(self.field, "unexpected type"));
        }
        Ok(tlv.value)
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), KeyDescriptionError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(err(self.field, "trailing data"))
        }
    }

    pub fn integer(&mut self) -> Result<u64, KeyDescriptionError> {
        let v = self.expect(INTEGER)?;
        uint(v, self.field)
    }

    pub fn enumerated(&mut self) -> Result<u64, KeyDescriptionError> {
        let v = self.expect(ENUMERATED)?;
        uint(v, self.field)
    }

    pub fn octets(&mut self) -> Result<&'a [u8], KeyDescriptionError> {
        self.expect(OCTET_STRING)
    }

    pub fn boolean(&mut self) -> Result<bool, KeyDescriptionError> {
        match self.expect(BOOLEAN)? {
            [0x00] => Ok(false),
            [0xff] => Ok(true),
            _ => Err(err(self.field, "BOOLEAN must be 0x00 or 0xff")),
        }
    }

    pub fn null(&mut self) -> Result<(), KeyDescriptionError> {
        if self.expect(NULL)?.is_empty() {
            Ok(())
        } else {
            Err(err(self.field, "NULL with content"))
        }
    }
}

/// A non-negative INTEGER that fits in 64 bits (minimal two's complement).
pub(crate) fn uint(v: &[u8], field: &'static str) -> Result<u64, KeyDescriptionError> {
    match v {
        [] => Err(err(field, "empty INTEGER")),
        [0, next, ..] if next & 0x80 == 0 => Err(err(field, "non-minimal INTEGER")),
        [first, ..] if first & 0x80 != 0 => Err(err(field, "negative INTEGER")),
        _ => {
            let digits = match v {
                [0, rest @ ..] => rest,
                all => all,
            };
            if digits.len() > 8 {
                return Err(err(field, "INTEGER exceeds 64 bits"));
            }
            Ok(digits
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(uint(&[0x00], "x").unwrap(), 0);
        assert_eq!(uint(&[0x00, 0xff], "x").unwrap(), 255);
        assert!(uint(&[0x00, 0x7f], "x").is_err());
        assert!(uint(&[0xff], "x").is_err());
        assert!(uint(&[], "x").is_err());
        assert_eq!(
            uint(&[0x00, 0xff, 0xff, 0xff, 0xff], "x").unwrap(),
            0xffff_ffff
        );
        assert!(uint(&[1, 0, 0, 0, 0, 0, 0, 0, 0], "x").is_err());
    }

    #[test]
    fn high_tag_numbers_and_lengths() {
        // [701] { INTEGER 1 }
        let bytes = [0xbf, 0x85, 0x3d, 0x03, 0x02, 0x01, 0x01];
        let mut r = Reader::new(&bytes, "t");
        let tlv = r.next_tlv().unwrap();
        assert_eq!(
            (tlv.class, tlv.constructed, tlv.number),
            (Class::Context, true, 701)
        );
        assert!(r.finish().is_ok());
        assert!(Reader::new(&[0x04, 0x80], "t").next_tlv().is_err());
        assert!(Reader::new(&[0x04, 0x81, 0x01, 0x00], "t")
            .next_tlv()
            .is_err());
        assert!(Reader::new(&[0x04, 0x02, 0x00], "t").next_tlv().is_err());
    }
}
