//! SQL of the catalogue: films, genres, persons. Every query that returns films takes
//! the viewer's maximum age class, so what a viewer may not see never leaves the database.

pub mod films;
pub mod genres;
pub mod persons;
pub mod search_query;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A page of results with its position.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PageInfo {
    /// 1-based page number.
    pub number: u32,
    pub size: u32,
    /// Matching items in all pages.
    pub total: i64,
}

/// Page number and size as asked, validated.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub number: u32,
    pub size: u32,
}

impl Paging {
    pub const MAX_SIZE: u32 = 100;
    pub const DEFAULT_SIZE: u32 = 50;
    /// Deep pages cost a scan of everything before them: bound how deep. A page must
    /// end within the first this many results (`number × size` at most this).
    pub const MAX_RESULTS: u32 = 10_000;

    pub fn limit(self) -> i64 {
        i64::from(self.size)
    }

    pub fn offset(self) -> i64 {
        i64::from(self.number - 1) * i64::from(self.size)
    }

    pub fn info(self, total: i64) -> PageInfo {
        PageInfo { number: self.number, size: self.size, total }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct GenreRef {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct PersonRef {
    pub id: Uuid,
    pub full_name: String,
}
