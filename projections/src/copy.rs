//! Rows written with PostgreSQL's binary `COPY ... FROM STDIN (FORMAT binary)`: the
//! cheapest way to load many rows (no per-row parsing of text or arrays by the server).
//! The format is PostgreSQL's (documented under `COPY`, "Binary Format"): a signature and
//! header, then each row as a field count and each field as a length (-1 for NULL) and
//! its value in the type's binary send format, then a trailer.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgCopyIn;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ProjectionError;

/// The signature, flags and header extension length that open a binary COPY stream.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Bytes buffered before they are sent (so a batch of large rows is not held twice).
const CHUNK: usize = 1 << 20;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Rows encoded in the binary COPY format (the header first), not yet sent.
#[derive(Debug)]
pub struct Encoder {
    buf: Vec<u8>,
    fields: i16,
}

impl Encoder {
    /// An encoder of rows of `fields` columns.
    pub fn new(fields: i16) -> Self {
        Self { buf: HEADER.to_vec(), fields }
    }

    /// Opens the next row; its fields follow, in the statement's column order.
    pub fn row(&mut self) {
        self.buf.extend_from_slice(&self.fields.to_be_bytes());
    }

    /// A field's length and bytes (or -1 for NULL); a value whose length does not fit
    /// the format's 32-bit length is refused (PostgreSQL's own limit, 1 GiB, is lower).
    fn field(&mut self, value: Option<&[u8]>) -> Result<(), ProjectionError> {
        match value {
            Some(v) => {
                let len = i32::try_from(v.len())
                    .map_err(|_| ProjectionError::Decode(format!("a field of {} bytes is too long for COPY", v.len())))?;
                self.buf.extend_from_slice(&len.to_be_bytes());
                self.buf.extend_from_slice(v);
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        Ok(())
    }

    /// A field of a fixed-size type.
    fn fixed<const N: usize>(&mut self, value: Option<[u8; N]>) {
        match value {
            Some(v) => {
                self.buf.extend_from_slice(&(N as i32).to_be_bytes());
                self.buf.extend_from_slice(&v);
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    pub fn uuid(&mut self, v: &Uuid) {
        self.fixed(Some(*v.as_bytes()));
    }

    pub fn int4(&mut self, v: i32) {
        self.fixed(Some(v.to_be_bytes()));
    }

    pub fn int8(&mut self, v: i64) {
        self.fixed(Some(v.to_be_bytes()));
    }

    pub fn float8(&mut self, v: f64) {
        self.fixed(Some(v.to_bits().to_be_bytes()));
    }

    pub fn bool(&mut self, v: Option<bool>) {
        self.fixed(v.map(|b| [u8::from(b)]));
    }

    /// A `text` or `json` field (the binary form of `json` is its text).
    pub fn text(&mut self, v: Option<&str>) -> Result<(), ProjectionError> {
        self.field(v.map(str::as_bytes))
    }

    pub fn timestamptz(&mut self, v: &DateTime<Utc>) {
        let micros = v.timestamp_micros().saturating_sub(PG_EPOCH_MICROS);
        self.fixed(Some(micros.to_be_bytes()));
    }

    /// The bytes encoded so far, leaving the encoder empty (the header is not repeated).
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// The trailer that ends the stream.
    fn end(&mut self) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
    }
}

/// A binary COPY in progress on one connection: rows are encoded through `Deref` to its
/// [`Encoder`] and sent once [`CHUNK`] bytes are buffered, and at [`Self::finish`].
pub struct BinaryCopy<'c> {
    copy: PgCopyIn<&'c mut PgConnection>,
    rows: Encoder,
}

impl std::fmt::Debug for BinaryCopy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinaryCopy").field("rows", &self.rows).finish_non_exhaustive()
    }
}

impl std::ops::Deref for BinaryCopy<'_> {
    type Target = Encoder;
    fn deref(&self) -> &Encoder {
        &self.rows
    }
}

impl std::ops::DerefMut for BinaryCopy<'_> {
    fn deref_mut(&mut self) -> &mut Encoder {
        &mut self.rows
    }
}

impl<'c> BinaryCopy<'c> {
    /// Starts `statement` (a `COPY ... FROM STDIN (FORMAT binary)`) whose rows have
    /// `fields` columns.
    pub async fn start(conn: &'c mut PgConnection, statement: &str, fields: i16) -> Result<Self, ProjectionError> {
        let copy = conn.copy_in_raw(statement).await?;
        Ok(Self { copy, rows: Encoder::new(fields) })
    }

    /// Sends what is buffered once it reaches [`CHUNK`] (call between rows).
    pub async fn flush_if_full(&mut self) -> Result<(), ProjectionError> {
        if self.rows.buf.len() >= CHUNK {
            self.copy.send(self.rows.take()).await?;
        }
        Ok(())
    }

    /// Sends the trailer and ends the COPY; returns the rows written.
    pub async fn finish(mut self) -> Result<u64, ProjectionError> {
        self.rows.end();
        self.copy.send(self.rows.take()).await?;
        Ok(self.copy.finish().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_its_field_count_then_each_field_as_length_and_big_endian_value_with_minus_one_for_null() {
        let mut e = Encoder::new(8);
        e.row();
        e.uuid(&Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10));
        e.int4(-2);
        e.int8(1 << 40);
        e.float8(1.5);
        e.bool(Some(true));
        e.bool(None);
        e.text(Some("{\"a\":\"\\u0000\\t\"}")).unwrap();
        e.timestamptz(&DateTime::from_timestamp(946_684_801, 2_000).unwrap_or_default());
        e.end();
        let mut want = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend([0, 0, 0, 0, 0, 0, 0, 0]); // flags, header extension length
        want.extend([0, 8]);
        want.extend([0, 0, 0, 16]);
        want.extend(1..=16u8);
        want.extend([0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe]);
        want.extend([0, 0, 0, 8, 0, 0, 1, 0, 0, 0, 0, 0]);
        want.extend([0, 0, 0, 8, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
        want.extend([0, 0, 0, 1, 1]);
        want.extend([0xff, 0xff, 0xff, 0xff]);
        let json = br#"{"a":"\u0000\t"}"#;
        want.extend([0, 0, 0, json.len() as u8]);
        want.extend(json);
        // One second and 2 microseconds after 2000-01-01T00:00:00Z, PostgreSQL's epoch.
        want.extend([0, 0, 0, 8]);
        want.extend(1_000_002i64.to_be_bytes());
        want.extend([0xff, 0xff]);
        assert_eq!(e.take(), want);
    }
}
