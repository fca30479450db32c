//! `page[number]` and `page[size]` query parameters.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::{catalog::Paging, error::ApiError};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number (default 1). A page must end within the first 10,000
    /// results: `page[number] × page[size]` at most 10000 (page 200 at the default
    /// size of 50); a deeper page is 422.
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
        if u64::from(number) * u64::from(size) > u64::from(Paging::MAX_RESULTS) {
            return Err(ApiError::field(
                "page[number]",
                format!("pages end after the first {max} results: page[number] × page[size] may be at most {max}", max = Paging::MAX_RESULTS),
            ));
        }
        Ok(Paging { number, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paging(number: u32, size: Option<u32>) -> Result<Paging, ApiError> {
        PageParams { number: Some(number), size }.paging()
    }

    /// The last page allowed ends exactly at result 10,000; the next one would go past it.
    #[test]
    fn pages_end_within_the_first_ten_thousand_results() {
        for (last, size) in [(200, None), (100, Some(100)), (10_000, Some(1)), (1_250, Some(8))] {
            let page = paging(last, size).expect("the page ending at result 10,000");
            assert_eq!(page.offset() + page.limit(), 10_000);
            match paging(last + 1, size) {
                Err(ApiError::Validation(errors)) => {
                    assert_eq!(errors[0].field, "page[number]");
                    assert!(errors[0].message.contains("10000"), "{}", errors[0].message);
                }
                other => panic!("page {} of {size:?} was {other:?}", last + 1),
            }
        }
    }
}
