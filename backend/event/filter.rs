//! Category and element filters, named as Centreon names them.

use std::collections::HashSet;

use super::types::{category_by_name, CATEGORIES};
use super::{catalogue, EventType};

/// Which events an output accepts: whole categories and single event types.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Empty with empty `types` means everything.
    categories: Vec<u16>,
    types: HashSet<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("unknown category `{0}` (known: {known})", known = known_categories())]
    UnknownCategory(String),
    #[error("category `{category}` has no event named `{element}`")]
    UnknownElement { category: String, element: String },
}

fn known_categories() -> String {
    CATEGORIES
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Filter {
    /// Accepts every event.
    pub fn all() -> Self {
        Filter::default()
    }

    /// Resolves Centreon filter names: a category (`neb`, `storage`, `bam`,
    /// …), `category:event` with the event's registration name
    /// (`neb:host_status`, `neb:ServiceStatus`, `storage:pb_metric`), or
    /// `all`. Names are case-sensitive, as Centreon's are: `neb:service` and
    /// `neb:Service` are two different events.
    ///
    /// An empty list accepts everything, as Centreon does when no valid name
    /// remains; unlike Centreon, an unknown name is an error rather than a
    /// line in a log nobody reads.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, FilterError> {
        let mut filter = Filter::default();
        for name in names {
            let name = name.as_ref().trim();
            if name == "all" {
                return Ok(Filter::all());
            }
            match name.split_once(':') {
                None => {
                    let category = category_by_name(name)
                        .ok_or_else(|| FilterError::UnknownCategory(name.to_owned()))?;
                    filter.categories.push(category.id);
                }
                Some((category_name, element)) => {
                    let category = category_by_name(category_name)
                        .ok_or_else(|| FilterError::UnknownCategory(category_name.to_owned()))?;
                    let def =
                        catalogue::by_category_and_name(category.id, element).ok_or_else(|| {
                            FilterError::UnknownElement {
                                category: category_name.to_owned(),
                                element: element.to_owned(),
                            }
                        })?;
                    filter.types.insert(def.event_type().0);
                }
            }
        }
        Ok(filter)
    }

    #[inline]
    pub fn accepts_all(&self) -> bool {
        self.categories.is_empty() && self.types.is_empty()
    }

    #[inline]
    pub fn accepts(&self, ty: EventType) -> bool {
        self.accepts_all() || self.categories.contains(&ty.category()) || self.types.contains(&ty.0)
    }
}
