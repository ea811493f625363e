//! What `projections rebuild` gives its copies of a read model's tables beyond `LIKE …
//! INCLUDING ALL`: the live tables' storage options (which `LIKE` does not copy), and
//! their indexes as it handles them: the secondary ones (built once, after the replay,
//! under the live names) and the unique ones backing no constraint (kept while replaying,
//! renamed to the live names).

use sqlx::PgConnection;

use super::RebuildError;

/// The indexes of `schema.table` that back no constraint and are not unique (so no insert
/// or upsert relies on them): `(name, CREATE INDEX statement)`.
pub(super) async fn secondary_indexes(conn: &mut PgConnection, schema: &str, table: &str) -> Result<Vec<(String, String)>, RebuildError> {
    indexes_backing_no_constraint(conn, (schema, table), false).await
}

/// The indexes of `schema.table` that back no constraint and are unique (`unique`) or not:
/// `(name, CREATE INDEX statement)`.
async fn indexes_backing_no_constraint(
    conn: &mut PgConnection,
    (schema, table): (&str, &str),
    unique: bool,
) -> Result<Vec<(String, String)>, RebuildError> {
    Ok(sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
           JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid \
           JOIN pg_namespace n ON n.oid = t.relnamespace \
          WHERE n.nspname = $1 AND t.relname = $2 AND i.indisunique = $3 \
            AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
          ORDER BY c.relname",
    )
    .bind(schema)
    .bind(table)
    .bind(unique)
    .fetch_all(&mut *conn)
    .await?)
}

/// The statements that give the unique indexes of `gov_rebuild.table` backing no
/// constraint (kept while replaying: an insert or upsert may rely on them) their live
/// names: `LIKE … INCLUDING ALL` names copied indexes by PostgreSQL's default rule, and
/// the swapped-in table keeps its indexes' names. Matched by definition.
pub(super) async fn unique_index_names(conn: &mut PgConnection, table: &str) -> Result<String, RebuildError> {
    let live = indexes_backing_no_constraint(conn, ("public", table), true).await?;
    let copies = indexes_backing_no_constraint(conn, ("gov_rebuild", table), true).await?;
    let after_name = |definition: &str| definition.split_once(" ON ").map(|(_, rest)| rest.to_owned());
    let mut renames = String::new();
    for (name, definition) in live {
        let wanted = after_name(&placed(&name, &definition, table)?);
        let copy = copies.iter().find(|(_, d)| after_name(d) == wanted);
        let Some((copy, _)) = copy else { return Err(RebuildError::Index(format!("{name}: no copy of {definition}"))) };
        if *copy != name {
            renames.push_str(&format!("ALTER INDEX gov_rebuild.{} RENAME TO {};", quoted(copy), quoted(&name)));
        }
    }
    Ok(renames)
}

/// A live index's definition, on `gov_rebuild.table` instead: qualified (`ON public.t`)
/// unless the live table is visible unqualified.
pub(super) fn placed(name: &str, definition: &str, table: &str) -> Result<String, RebuildError> {
    let split = definition.split_once(&format!(" ON public.{table} ")).or_else(|| definition.split_once(&format!(" ON {table} ")));
    let Some((head, tail)) = split else { return Err(RebuildError::Index(format!("{name}: {definition}"))) };
    Ok(format!("{head} ON gov_rebuild.{table} {tail}"))
}

/// The statement that gives `gov_rebuild.table` the storage options of `public.table`
/// (e.g. the evidence packs' fillfactor), or nothing when it has none.
pub(super) async fn storage_options(conn: &mut PgConnection, table: &str) -> Result<String, RebuildError> {
    let options: Option<String> = sqlx::query_scalar(
        "SELECT array_to_string(c.reloptions, ', ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = 'public' AND c.relname = $1",
    )
    .bind(table)
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    Ok(options.filter(|o| !o.is_empty()).map(|o| format!("ALTER TABLE gov_rebuild.{table} SET ({o});")).unwrap_or_default())
}

/// An identifier quoted for SQL.
pub(super) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
