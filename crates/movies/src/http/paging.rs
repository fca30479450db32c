//! `page[number]` and `page[size]` query parameters.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::{catalog::Paging, error::ApiError};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number (default 1).
    #[serde(rename = "page[number]")]
    #[param(rename = "page[number]", minimum = 1)]
    pub number: Option<u32>,
    /// Items per page, 1 to 100 (default 50).
    #[serde(rename = "page[size]")]
    #[param(rename = "page[size]", minimum = 1, maximum = 100)]
    pub size: Option<u32>,
}

impl PageParams {
    pub fn paging(&self) -> Result<Paging, ApiError> {
        let number = self.number.unwrap_or(1);
        let size = self.size.unwrap_or(Paging::DEFAULT_SIZE);
        if number == 0 {
            return Err(ApiError::field("page[number]", "must be at least 1"));
        }
        if !(1..=Paging::MAX_SIZE).contains(&size) {
            return Err(ApiError::field("page[size]", format!("must be 1 to {}", Paging::MAX_SIZE)));
        }
        if u64::from(number - 1) * u64::from(size) > u64::from(Paging::MAX_OFFSET) {
            return Err(ApiError::field("page[number]", format!("pages end after the first {} results", Paging::MAX_OFFSET)));
        }
        Ok(Paging { number, size })
    }
}
