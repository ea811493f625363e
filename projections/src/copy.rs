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

/// A binary COPY in progress on one connection.
pub struct BinaryCopy<'c> {
    copy: PgCopyIn<&'c mut PgConnection>,
    buf: Vec<u8>,
    fields: i16,
}

impl std::fmt::Debug for BinaryCopy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinaryCopy").field("buffered", &self.buf.len()).field("fields", &self.fields).finish()
    }
}

impl<'c> BinaryCopy<'c> {
    /// Starts `statement` (a `COPY ... FROM STDIN (FORMAT binary)`) whose rows have
    /// `fields` columns.
    pub async fn start(conn: &'c mut PgConnection, statement: &str, fields: i16) -> Result<Self, ProjectionError> {
        let copy = conn.copy_in_raw(statement).await?;
        Ok(Self { copy, buf: HEADER.to_vec(), fields })
    }

    /// Opens the next row; its fields follow, in the statement's column order. Sends what
    /// is buffered once it reaches [`CHUNK`].
    pub async fn row(&mut self) -> Result<(), ProjectionError> {
        if self.buf.len() >= CHUNK {
            self.copy.send(std::mem::take(&mut self.buf)).await?;
        }
        self.buf.extend_from_slice(&self.fields.to_be_bytes());
        Ok(())
    }

    fn field(&mut self, value: Option<&[u8]>) {
        match value {
            Some(v) => {
                // A field longer than i32::MAX bytes cannot be sent; PostgreSQL's own
                // limit (1 GiB) is far below it, so the server refuses it first.
                let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
                self.buf.extend_from_slice(&len.to_be_bytes());
                self.buf.extend_from_slice(v);
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    pub fn uuid(&mut self, v: &Uuid) {
        self.field(Some(v.as_bytes()));
    }

    pub fn int4(&mut self, v: i32) {
        self.field(Some(&v.to_be_bytes()));
    }

    pub fn int8(&mut self, v: i64) {
        self.field(Some(&v.to_be_bytes()));
    }

    pub fn float8(&mut self, v: f64) {
        self.field(Some(&v.to_bits().to_be_bytes()));
    }

    pub fn bool(&mut self, v: Option<bool>) {
        self.field(v.map(|b| [u8::from(b)]).as_ref().map(|b| b.as_slice()));
    }

    /// A `text` or `json` field (the binary form of `json` is its text).
    pub fn text(&mut self, v: Option<&str>) {
        self.field(v.map(str::as_bytes));
    }

    pub fn timestamptz(&mut self, v: &DateTime<Utc>) {
        let micros = v.timestamp_micros().saturating_sub(PG_EPOCH_MICROS);
        self.field(Some(&micros.to_be_bytes()));
    }

    /// Sends the trailer and ends the COPY; returns the rows written.
    pub async fn finish(mut self) -> Result<u64, ProjectionError> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.copy.send(self.buf).await?;
        Ok(self.copy.finish().await?)
    }
}
