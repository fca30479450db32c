//! `movies load-demo`: loads the 3,201 films of `vega-datasets` 3.2.1
//! (`data/movies.json`, BSD-3-Clause, see `data/NOTICE.md`) into the catalogue.
//!
//! Genres become genres and directors persons. Identifiers are UUIDv5 of stable
//! names (a film's: its title and release date as published), and a load replaces the
//! catalogue with the file's: loading twice, or a changed file, updates in place
//! instead of duplicating, and what the file no longer holds is deleted.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use anyhow::Context;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Namespace of the catalogue's UUIDv5 identifiers.
const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_9b1e_3d3a_4a51_9d8e_3c55_0e7a_c1ab);

/// The bundled dataset.
pub const DEFAULT_DATASET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/movies.json");

/// One record of `movies.json`, as published.
#[derive(Debug, Deserialize)]
pub struct Record {
    #[serde(rename = "Title")]
    title: Value,
    #[serde(rename = "US Gross")]
    us_gross: Option<i64>,
    #[serde(rename = "Worldwide Gross")]
    worldwide_gross: Option<i64>,
    #[serde(rename = "Production Budget")]
    production_budget: Option<i64>,
    #[serde(rename = "Release Date")]
    release_date: Option<String>,
    #[serde(rename = "MPAA Rating")]
    mpaa_rating: Option<String>,
    #[serde(rename = "Running Time min")]
    running_time_min: Option<i16>,
    #[serde(rename = "Distributor")]
    distributor: Option<String>,
    #[serde(rename = "Source")]
    source: Option<String>,
    #[serde(rename = "Major Genre")]
    major_genre: Option<String>,
    #[serde(rename = "Creative Type")]
    creative_type: Option<String>,
    #[serde(rename = "Director")]
    director: Option<String>,
    #[serde(rename = "Rotten Tomatoes Rating")]
    rotten_tomatoes: Option<i16>,
    #[serde(rename = "IMDB Rating")]
    imdb_rating: Option<f32>,
    #[serde(rename = "IMDB Votes")]
    imdb_votes: Option<i32>,
}

/// MPAA rating → Russian age class (Federal Law 436-FZ classes 0+, 6+, 12+, 16+, 18+).
/// Unrated films are treated as adult: a film is shown to minors only once classified.
pub fn age_class(mpaa: Option<&str>) -> u8 {
    match mpaa {
        Some("G") => 0,
        Some("PG") => 6,
        Some("PG-13") => 12,
        Some("R") => 16,
        _ => 18, // NC-17, "Not Rated", "Open", missing
    }
}

/// The access tier: recent films (released 2005 or later) and the best rated (IMDb
/// 7.5 or more) need a subscription; the rest of the back catalogue is free.
pub fn access_tier(release: Option<NaiveDate>, imdb_rating: Option<f32>) -> &'static str {
    let recent = release.is_some_and(|d| d.year() >= 2005);
    let acclaimed = imdb_rating.is_some_and(|r| r >= 7.5);
    if recent || acclaimed { "subscription" } else { "free" }
}

/// The last year of a genuine release date in the dataset: it was compiled in 2010,
/// and its only later dates that are right are two announced releases of 2011
/// (Restless, The Adventures of Tintin).
const LAST_GENUINE_YEAR: i32 = 2011;

/// Dates are like `Jun 12 1998`. Some carry a century error (`Jan 01 2046` for 1946,
/// `Feb 08 2015` for The Birth of a Nation, 1915): years after 2011 lose a century.
pub fn release_date(raw: Option<&str>) -> Option<NaiveDate> {
    let date = NaiveDate::parse_from_str(raw?.trim(), "%b %d %Y").ok()?;
    if date.year() > LAST_GENUINE_YEAR { date.with_year(date.year() - 100) } else { Some(date) }
}

fn title(value: &Value) -> String {
    match value {
        Value::String(s) if !s.trim().is_empty() => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => "(untitled)".to_owned(),
    }
}

fn name_id(kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{kind}:{name}").as_bytes())
}

/// The id of each record's film: UUIDv5 of its title and its release date as published
/// (before the century correction, so that a change of the loader's rules moves no
/// film), never of its place in the file, which a record added or removed would shift.
/// The bundled dataset shares 24 titles between films (remakes), never a title and a
/// date. A record with the same title and date as an earlier one of the file, a true
/// duplicate, is kept as a film of its own, its id taken with the number of its
/// occurrence (2, 3, ...): deterministic, and only such duplicates depend on the order.
pub fn film_ids(records: &[Record]) -> Vec<Uuid> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    records
        .iter()
        .map(|r| {
            let key = format!("{}\u{1f}{}", title(&r.title), r.release_date.as_deref().map_or("", str::trim));
            let occurrence = seen.entry(key.clone()).and_modify(|n| *n += 1).or_insert(1);
            if *occurrence == 1 { name_id("film", &key) } else { name_id("film", &format!("{key}\u{1f}{occurrence}")) }
        })
        .collect()
}

pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not the vega-datasets movies.json", path.display()))
}

#[derive(Debug, PartialEq, Eq)]
pub struct Loaded {
    pub films: usize,
    pub genres: usize,
    pub persons: usize,
}

/// Replaces the catalogue with `records`, in one transaction: the catalogue changes
/// whole or not at all. Films, genres and persons of the file are inserted or updated
/// under their stable ids; those it does not hold are deleted, with their links. Then
/// gathers the planner's statistics of the tables it filled, as PostgreSQL advises
/// after a bulk load, rather than leave searches planned blind until autovacuum comes
/// by (or never, where it is off).
pub async fn load(db: &PgPool, records: &[Record]) -> anyhow::Result<Loaded> {
    // A replace with nothing would empty the catalogue: far likelier a wrong file than a
    // wish, and the site's whole content.
    anyhow::ensure!(!records.is_empty(), "the file holds no film; the catalogue is left as it is");
    let mut genres = BTreeMap::new();
    let mut persons = BTreeMap::new();
    for r in records {
        if let Some(g) = r.major_genre.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
            genres.insert(g.to_owned(), name_id("genre", g));
        }
        if let Some(p) = r.director.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            persons.insert(p.to_owned(), name_id("person", p));
        }
    }
    let mut tx = db.begin().await?;
    for (name, id) in &genres {
        sqlx::query("INSERT INTO genres (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name")
            .bind(id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    for (name, id) in &persons {
        sqlx::query("INSERT INTO persons (id, full_name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET full_name = EXCLUDED.full_name")
            .bind(id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    let ids = film_ids(records);
    for (r, &id) in records.iter().zip(&ids) {
        let title = title(&r.title);
        let released = release_date(r.release_date.as_deref());
        sqlx::query(
            "INSERT INTO films (id, title, release_date, imdb_rating, imdb_votes, rotten_tomatoes, mpaa_rating, age_class,
                                access_tier, running_time_min, distributor, source, creative_type, us_gross, worldwide_gross,
                                production_budget)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, release_date = EXCLUDED.release_date,
                 imdb_rating = EXCLUDED.imdb_rating, imdb_votes = EXCLUDED.imdb_votes, rotten_tomatoes = EXCLUDED.rotten_tomatoes,
                 mpaa_rating = EXCLUDED.mpaa_rating, age_class = EXCLUDED.age_class, access_tier = EXCLUDED.access_tier,
                 running_time_min = EXCLUDED.running_time_min, distributor = EXCLUDED.distributor, source = EXCLUDED.source,
                 creative_type = EXCLUDED.creative_type, us_gross = EXCLUDED.us_gross, worldwide_gross = EXCLUDED.worldwide_gross,
                 production_budget = EXCLUDED.production_budget",
        )
        .bind(id)
        .bind(&title)
        .bind(released)
        .bind(r.imdb_rating)
        .bind(r.imdb_votes)
        .bind(r.rotten_tomatoes)
        .bind(r.mpaa_rating.as_deref())
        .bind(i16::from(age_class(r.mpaa_rating.as_deref())))
        .bind(access_tier(released, r.imdb_rating))
        .bind(r.running_time_min)
        .bind(r.distributor.as_deref())
        .bind(r.source.as_deref())
        .bind(r.creative_type.as_deref())
        .bind(r.us_gross)
        .bind(r.worldwide_gross)
        .bind(r.production_budget)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM film_genres WHERE film_id = $1").bind(id).execute(&mut *tx).await?;
        if let Some(genre) = r.major_genre.as_deref().map(str::trim).and_then(|g| genres.get(g)) {
            sqlx::query("INSERT INTO film_genres (film_id, genre_id) VALUES ($1, $2)").bind(id).bind(genre).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM film_persons WHERE film_id = $1").bind(id).execute(&mut *tx).await?;
        if let Some(person) = r.director.as_deref().map(str::trim).and_then(|p| persons.get(p)) {
            sqlx::query("INSERT INTO film_persons (film_id, person_id, role) VALUES ($1, $2, 'director')")
                .bind(id)
                .bind(person)
                .execute(&mut *tx)
                .await?;
        }
    }
    // What the file no longer holds; film_genres and film_persons follow (ON DELETE CASCADE).
    sqlx::query("DELETE FROM films WHERE id <> ALL($1)").bind(&ids).execute(&mut *tx).await?;
    let genre_ids: Vec<Uuid> = genres.values().copied().collect();
    sqlx::query("DELETE FROM genres WHERE id <> ALL($1)").bind(&genre_ids).execute(&mut *tx).await?;
    let person_ids: Vec<Uuid> = persons.values().copied().collect();
    sqlx::query("DELETE FROM persons WHERE id <> ALL($1)").bind(&person_ids).execute(&mut *tx).await?;
    tx.commit().await?;
    // The catalogue is committed whatever happens here: without statistics, searches
    // are only planned less well until autovacuum gathers them.
    if let Err(e) = sqlx::query("ANALYZE films, film_genres, film_persons, genres, persons, title_words").execute(db).await {
        tracing::warn!(error = %e, "could not gather statistics on the catalogue's tables");
    }
    Ok(Loaded { films: records.len(), genres: genres.len(), persons: persons.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpaa_ratings_map_to_age_classes() {
        let table = [
            (Some("G"), 0),
            (Some("PG"), 6),
            (Some("PG-13"), 12),
            (Some("R"), 16),
            (Some("NC-17"), 18),
            (Some("Not Rated"), 18),
            (Some("Open"), 18),
            (None, 18),
        ];
        for (mpaa, class) in table {
            assert_eq!(age_class(mpaa), class, "{mpaa:?}");
        }
    }

    #[test]
    fn dates_parse_and_century_errors_are_corrected() {
        assert_eq!(release_date(Some("Jun 12 1998")), NaiveDate::from_ymd_opt(1998, 6, 12));
        assert_eq!(release_date(Some("Jan 01 2046")), NaiveDate::from_ymd_opt(1946, 1, 1));
        // The Birth of a Nation (1915): once kept as 2015, the newest film of the catalogue.
        assert_eq!(release_date(Some("Feb 08 2015")), NaiveDate::from_ymd_opt(1915, 2, 8));
        // The only genuine years after the dataset's 2010: Restless and Tintin (2011).
        assert_eq!(release_date(Some("Dec 23 2011")), NaiveDate::from_ymd_opt(2011, 12, 23));
        assert_eq!(release_date(Some("Dec 31 2012")), NaiveDate::from_ymd_opt(1912, 12, 31));
        assert_eq!(release_date(Some("garbage")), None);
        assert_eq!(release_date(None), None);
    }

    #[test]
    fn film_ids_hold_title_and_date_not_the_place_in_the_file() {
        let record = |title: &str, date: Option<&str>| -> Record {
            serde_json::from_value(serde_json::json!({"Title": title, "Release Date": date})).unwrap()
        };
        let ids = film_ids(&[record("Ben-Hur", Some("Dec 30 2025")), record("Ben-Hur", Some("Nov 18 1959"))]);
        let moved = film_ids(&[record("Up", None), record("Ben-Hur", Some("Nov 18 1959")), record("Ben-Hur", Some("Dec 30 2025"))]);
        assert_eq!((moved[2], moved[1]), (ids[0], ids[1]), "remakes are told apart by their date, wherever they are");
        // True duplicates: each a film, the first keeping the id it has alone.
        let twice = film_ids(&[record("Up", None), record("Up", None), record("Up", None)]);
        assert_eq!(twice[0], moved[0]);
        assert!(twice[0] != twice[1] && twice[1] != twice[2] && twice[0] != twice[2], "{twice:?}");
        assert_eq!(twice, film_ids(&[record("Up", None), record("Up", None), record("Up", None)]));
    }

    #[test]
    fn tiers_follow_the_rule() {
        let d = |y| NaiveDate::from_ymd_opt(y, 1, 1);
        assert_eq!(access_tier(d(2007), Some(5.0)), "subscription");
        assert_eq!(access_tier(d(1972), Some(8.1)), "subscription");
        assert_eq!(access_tier(d(1999), Some(7.4)), "free");
        assert_eq!(access_tier(None, None), "free");
    }

    #[test]
    fn the_bundled_dataset_has_3201_films() {
        let records = read(Path::new(DEFAULT_DATASET)).unwrap();
        assert_eq!(records.len(), 3201);
        let titles: Vec<String> = records.iter().map(|r| title(&r.title)).collect();
        assert!(titles.contains(&"1941".to_owned()), "numeric titles become text");
        assert_eq!(titles.iter().filter(|t| *t == "(untitled)").count(), 1);
        let ids: std::collections::HashSet<Uuid> = film_ids(&records).into_iter().collect();
        assert_eq!(ids.len(), 3201, "one film per record");
        let dates: Vec<Option<NaiveDate>> = records.iter().map(|r| release_date(r.release_date.as_deref())).collect();
        let newest = dates.iter().flatten().max().unwrap();
        assert_eq!(*newest, NaiveDate::from_ymd_opt(2011, 12, 23).unwrap(), "Tintin, no century error");
        // As docs/movies.md says (the 1915 film was once a 2015 subscription film).
        let subscription = records.iter().zip(&dates).filter(|(r, d)| access_tier(**d, r.imdb_rating) == "subscription").count();
        assert_eq!((subscription, records.len() - subscription), (1329, 1872));
    }
}
