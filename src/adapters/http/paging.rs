//! The one paging contract of every list: `page` (from 1), `page_size` (1 to 100,
//! default 20), `sort_order` (`asc`/`desc`) and a list-specific `sort_by`, answered with
//! [`projections::Page`] (`items`, `page`, `page_size`, `total`).
//!
//! [`Listed`] extracts the three shared parameters once, the same way for every list, and
//! hands the rest of the query to the list's own filter type (which keeps
//! `deny_unknown_fields`, so a misspelt filter is a 400, never silently ignored).
//! `tests/list_contract.rs` walks every list operation of the served OpenAPI document
//! and checks the contract on each, so a new list cannot skip it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use projections::{Page, SortOrder};

use crate::error::ApiError;

/// The largest page a caller may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// The paging parameters every list shares (documented once, in each list's `params`).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// From 1 (default 1).
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// From 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u32>,
    /// `asc` or `desc`; the default depends on `sort_by` (documented per list).
    pub sort_order: Option<SortOrder>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub page_size: u32,
    /// As asked; `None` means the list's default for its sort key.
    pub order: Option<SortOrder>,
}

impl PageRequest {
    /// Validates `page` and `page_size` (defaults 1 and 20).
    pub fn new(page: Option<u32>, page_size: Option<u32>, order: Option<SortOrder>) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        if page == 0 {
            return Err(ApiError::invalid("page starts at 1"));
        }
        let page_size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(ApiError::invalid(format!("page_size must be from 1 to {MAX_PAGE_SIZE}")));
        }
        Ok(Self { page, page_size, order })
    }

    /// The sort order, or `default` when none was asked for.
    pub fn order_or(&self, default: SortOrder) -> SortOrder {
        self.order.unwrap_or(default)
    }

    /// One page of a list that is already in memory (the catalog, derived statuses).
    pub fn slice<T>(&self, mut all: Vec<T>) -> Page<T> {
        let total = all.len();
        let start = usize::try_from(projections::offset(self.page, self.page_size)).unwrap_or(usize::MAX).min(total);
        let end = start.saturating_add(self.page_size as usize).min(total);
        let items = all.drain(start..end).collect();
        Page { items, page: self.page, page_size: self.page_size, total: i64::try_from(total).unwrap_or(i64::MAX) }
    }
}

/// A list's query: the shared paging parameters and the list's own filters `F`.
#[derive(Debug)]
pub struct Listed<F> {
    pub page: PageRequest,
    pub filter: F,
}

const SHARED: [&str; 3] = ["page", "page_size", "sort_order"];

impl<S: Send + Sync, F: DeserializeOwned> FromRequestParts<S> for Listed<F> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| ApiError::invalid(e.to_string()))?;
        // A filter with text no read model holds (NUL) matches nothing and the database
        // refuses it: 422 here, never a failed query.
        for (key, value) in &pairs {
            crate::application::limits::check_text(value).map_err(|e| ApiError::validation(format!("query parameter {key}: {e}")))?;
        }
        let (shared, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| SHARED.contains(&k.as_str()));
        let encode = |v: &[(String, String)]| serde_urlencoded::to_string(v).map_err(|e| ApiError::invalid(e.to_string()));
        let p: PageParams = serde_urlencoded::from_str(&encode(&shared)?)
            .map_err(|e| ApiError::invalid(format!("Failed to deserialize query string: {e}")))?;
        let filter: F = serde_urlencoded::from_str(&encode(&rest)?)
            .map_err(|e| ApiError::invalid(format!("Failed to deserialize query string: {e}")))?;
        Ok(Listed { page: PageRequest::new(p.page, p.page_size, p.sort_order)?, filter })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_an_in_memory_list_reports_the_total_and_stops_at_the_end() {
        let req = PageRequest::new(Some(2), Some(3), None).unwrap_or_else(|e| panic!("{e:?}"));
        let page = req.slice((1..=7).collect::<Vec<i32>>());
        assert_eq!((page.items, page.total), (vec![4, 5, 6], 7));
        let past = PageRequest::new(Some(9), Some(3), None).unwrap_or_else(|e| panic!("{e:?}")).slice(vec![1, 2]);
        assert!(past.items.is_empty());
        assert_eq!(past.total, 2);
    }

    #[test]
    fn page_zero_and_oversized_pages_are_refused() {
        assert!(PageRequest::new(Some(0), None, None).is_err());
        assert!(PageRequest::new(None, Some(0), None).is_err());
        assert!(PageRequest::new(None, Some(MAX_PAGE_SIZE + 1), None).is_err());
        assert!(PageRequest::new(None, Some(MAX_PAGE_SIZE), None).is_ok());
    }
}
