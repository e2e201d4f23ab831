//! Entries and authors in the key-value store `default`.
//!
//! | Key | Value |
//! |---|---|
//! | `authors:last-id` | the number of authors, the last id given (a counter) |
//! | `author:{id}` | an [`Author`] as JSON |
//! | `author-email:{email}` | the id of the author with that email |
//! | `entries:last-id` | the last entry id given (a counter) |
//! | `entry:{id}` | an [`Entry`] as JSON |
//! | `entry-slug:{slug}` | the id of the entry at `/entry/{slug}` |
//!
//! Ids come from atomic counters and slugs are claimed with
//! compare-and-swap, so concurrent instances, or hosts sharing a Redis store,
//! never hand out one twice. Newest first is counting down from the last id.

use cyclone_sdk::HttpError;
use cyclone_sdk::kv::Store;
use serde::{Deserialize, Serialize};

/// Someone who may write entries.
#[derive(Serialize, Deserialize)]
pub struct Author {
    /// From 1.
    pub id: i64,
    /// How they log in; unique.
    pub email: String,
    /// Shown nowhere yet, as in Tornado's demo.
    pub name: String,
    /// bcrypt's hash of the password, with its salt and cost.
    pub hashed_password: String,
}

/// A blog post.
#[derive(Serialize, Deserialize)]
pub struct Entry {
    /// From 1, in the order entries were written.
    pub id: i64,
    /// Who wrote it.
    pub author_id: i64,
    /// Its address: `/entry/{slug}`, made from the first title and kept.
    pub slug: String,
    /// The title as written.
    pub title: String,
    /// The text as written, in Markdown.
    pub markdown: String,
    /// The text as HTML, rendered when saved.
    pub html: String,
    /// When it was first saved, in seconds since 1970.
    pub published: i64,
    /// When it was last saved.
    pub updated: i64,
}

/// The most keys read in one round trip.
const BATCH: i64 = 100;

/// How many `-2` suffixes a slug may get before saving gives up.
const MAX_SLUG_TRIES: usize = 20;

/// The blog's store.
pub struct Blog {
    store: Store,
}

impl Blog {
    /// Opens the store `default`; 503 when it cannot be reached.
    pub fn open() -> Result<Self, HttpError> {
        Ok(Self {
            store: Store::open("default")?,
        })
    }

    /// Whether the first author has been created.
    pub fn any_author_exists(&self) -> Result<bool, HttpError> {
        Ok(self.store.exists("authors:last-id")?)
    }

    /// Saves the first author and returns its id, or `None` when another
    /// author got there first (only one may be created this way).
    pub fn create_first_author(
        &self,
        email: &str,
        name: &str,
        hashed_password: String,
    ) -> Result<Option<i64>, HttpError> {
        let id = self.store.increment("authors:last-id", 1)?;
        if id != 1 {
            return Ok(None);
        }
        let author = Author {
            id,
            email: email.to_owned(),
            name: name.to_owned(),
            hashed_password,
        };
        self.store.set_json(&format!("author:{id}"), &author)?;
        self.store.set(
            &format!("author-email:{}", email_key(email)),
            id.to_string(),
        )?;
        Ok(Some(id))
    }

    /// The author who logs in with `email`.
    pub fn author_by_email(&self, email: &str) -> Result<Option<Author>, HttpError> {
        let Some(id) = self
            .store
            .get(&format!("author-email:{}", email_key(email)))?
        else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&id);
        Ok(self.store.get_json(&format!("author:{id}"))?)
    }

    /// The entry with id `id`.
    pub fn entry(&self, id: i64) -> Result<Option<Entry>, HttpError> {
        Ok(self.store.get_json(&format!("entry:{id}"))?)
    }

    /// The entry at `/entry/{slug}`.
    pub fn entry_by_slug(&self, slug: &str) -> Result<Option<Entry>, HttpError> {
        match self.store.get(&format!("entry-slug:{slug}"))? {
            Some(id) => match String::from_utf8_lossy(&id).parse() {
                Ok(id) => self.entry(id),
                Err(_) => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// Up to `limit` entries, newest first (`None`: all of them).
    pub fn latest(&self, limit: Option<usize>) -> Result<Vec<Entry>, HttpError> {
        let last: i64 = match self.store.get("entries:last-id")? {
            Some(bytes) => String::from_utf8_lossy(&bytes).parse().unwrap_or(0),
            None => 0,
        };
        let limit = limit.unwrap_or(usize::MAX);
        let mut entries = Vec::new();
        let mut high = last;
        while high >= 1 && entries.len() < limit {
            let low = (high - BATCH + 1).max(1);
            let keys: Vec<String> = (low..=high).rev().map(|id| format!("entry:{id}")).collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            for value in self.store.get_many(&keys)?.into_iter().flatten() {
                // An id whose entry is not written yet (a save in progress) is
                // skipped.
                if let Ok(entry) = serde_json::from_slice::<Entry>(&value) {
                    entries.push(entry);
                }
            }
            high = low - 1;
        }
        entries.truncate(limit);
        Ok(entries)
    }

    /// Saves a new entry with a slug made from its title (`-2` appended
    /// while the slug is taken, as Tornado's demo does) and returns it.
    pub fn create_entry(
        &self,
        author_id: i64,
        title: &str,
        markdown: &str,
        now: i64,
    ) -> Result<Entry, HttpError> {
        let id = self.store.increment("entries:last-id", 1)?;
        let mut slug = crate::slug(title);
        let mut tries = 0;
        while !self
            .store
            .compare_and_swap(&format!("entry-slug:{slug}"), None, id.to_string())?
        {
            tries += 1;
            if tries == MAX_SLUG_TRIES {
                return Err(HttpError::bad_request(
                    "too many entries have this title; choose another",
                ));
            }
            slug.push_str("-2");
        }
        let entry = Entry {
            id,
            author_id,
            slug,
            title: title.to_owned(),
            markdown: markdown.to_owned(),
            html: crate::markdown_to_html(markdown),
            published: now,
            updated: now,
        };
        self.store.set_json(&format!("entry:{id}"), &entry)?;
        Ok(entry)
    }

    /// Saves `entry` as it is now.
    pub fn save_entry(&self, entry: &Entry) -> Result<(), HttpError> {
        Ok(self.store.set_json(&format!("entry:{}", entry.id), entry)?)
    }
}

/// Emails compare without case.
fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}
