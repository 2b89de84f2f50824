//! Beam's multi-collection and layout transforms: `CoGroupByKey`,
//! `Flatten`, `Partition`, `Distinct`, `Reshuffle`.

use crate::dataset::Key;
use crate::rows::Data;

use super::{PBegin, PCollection, PTransform};

/// One key's values from each input of a [`CoGroupByKey`], by tag (Beam's
/// `CoGbkResult`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CoGbkResult<V> {
    /// The inputs' tags, in the order they were added.
    pub tags: Vec<String>,
    /// Each input's values for the key, in the order of `tags`.
    pub groups: Vec<Vec<V>>,
}

impl<V> CoGbkResult<V> {
    /// The values of the input tagged `tag` (empty where it has none for
    /// this key); `None` for a tag that is not an input's.
    pub fn get(&self, tag: &str) -> Option<&[V]> {
        let i = self.tags.iter().position(|t| t == tag)?;
        self.groups.get(i).map(Vec::as_slice)
    }
}

/// Groups several keyed collections by key, each under a tag (Beam's
/// `CoGroupByKey` over a dict of collections): one `(key, result)` per key
/// of any input, `result.get(tag)` holding that input's values for the key
/// (empty where it has none). For two inputs of different value types,
/// use [`Dataset::cogroup`](crate::Dataset::cogroup).
///
/// ```
/// use spate_core::prelude::*;
/// use spate_core::pipeline::CoGroupByKey;
/// let p = Pipeline::with_context(Context::builder().threads(2).build()?);
/// let emails = p.apply("Emails", Create(vec![("amy".to_string(), "amy@x".to_string())]));
/// let phones = p.apply("Phones", Create(vec![("amy".to_string(), "555".to_string()), ("bo".into(), "556".into())]));
/// let joined = p.apply("Join", CoGroupByKey::new().and("emails", emails).and("phones", phones));
/// let mut rows = joined.dataset().clone().collect()?;
/// rows.sort_by(|a, b| a.0.cmp(&b.0));
/// assert_eq!(rows[1].1.get("emails").map(<[String]>::len), Some(0));
/// assert_eq!(rows[1].1.get("phones"), Some(&["556".to_string()][..]));
/// # Ok::<(), spate_core::Error>(())
/// ```
pub struct CoGroupByKey<K, V> {
    inputs: Vec<(String, PCollection<(K, V)>)>,
}

impl<K, V> Default for CoGroupByKey<K, V> {
    fn default() -> Self {
        Self { inputs: Vec::new() }
    }
}

impl<K, V> CoGroupByKey<K, V> {
    /// No inputs yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an input under `tag`.
    pub fn and(mut self, tag: &str, input: PCollection<(K, V)>) -> Self {
        self.inputs.push((tag.to_string(), input));
        self
    }
}

impl<K: Key, V: Data> PTransform<PBegin> for CoGroupByKey<K, V> {
    type Out = PCollection<(K, CoGbkResult<V>)>;
    fn expand(self, input: PBegin) -> Self::Out {
        let p = input.pipeline().clone();
        let tags: Vec<String> = self.inputs.iter().map(|(t, _)| t.clone()).collect();
        let mut tagged = None;
        for (i, (_, pc)) in self.inputs.into_iter().enumerate() {
            let ds = pc.consume().map_values(move |v| (i as u32, v));
            tagged = Some(match tagged {
                None => ds,
                Some(all) => crate::Dataset::union(all, ds),
            });
        }
        let Some(tagged) = tagged else {
            let e = crate::Error::Usage("CoGroupByKey needs at least one input".into());
            p.fail(e.replay());
            return p.collection(p.context().failed(&e));
        };
        let ds = tagged.group_by_key().map_groups(move |k, values| {
            let mut groups: Vec<Vec<V>> = tags.iter().map(|_| Vec::new()).collect();
            for (i, v) in values {
                if let Some(group) = groups.get_mut(i as usize) {
                    group.push(v);
                }
            }
            let result = CoGbkResult {
                tags: tags.clone(),
                groups,
            };
            (k.clone(), result)
        });
        p.collection(ds)
    }
}

/// All elements of several collections as one (Beam's `Flatten`).
pub struct Flatten<T> {
    inputs: Vec<PCollection<T>>,
}

impl<T> Flatten<T> {
    /// Flattens `inputs`.
    pub fn of(inputs: Vec<PCollection<T>>) -> Self {
        Self { inputs }
    }
}

impl<T: Data> PTransform<PBegin> for Flatten<T> {
    type Out = PCollection<T>;
    fn expand(self, input: PBegin) -> PCollection<T> {
        let p = input.pipeline().clone();
        let mut all = None;
        for pc in self.inputs {
            let ds = pc.consume();
            all = Some(match all {
                None => ds,
                Some(a) => crate::Dataset::union(a, ds),
            });
        }
        let ds = all.unwrap_or_else(|| p.context().from_vec(Vec::new()));
        p.collection(ds)
    }
}

/// Splits a collection into `n` by a function of each element (Beam's
/// `Partition`): element `x` goes to collection `f(&x, n)` (wrapped into
/// range).
pub struct Partition<F> {
    n: usize,
    f: std::sync::Arc<F>,
}

impl<F> Partition<F> {
    /// `n` collections, chosen by `f(element, n)`.
    pub fn of(n: usize, f: F) -> Self {
        Self {
            n: n.max(1),
            f: std::sync::Arc::new(f),
        }
    }
}

impl<T, F> PTransform<PCollection<T>> for Partition<F>
where
    T: Data,
    F: Fn(&T, usize) -> usize + Send + Sync + 'static,
{
    type Out = Vec<PCollection<T>>;
    fn expand(self, input: PCollection<T>) -> Vec<PCollection<T>> {
        let n = self.n;
        (0..n)
            .map(|i| {
                let f = self.f.clone();
                let ds = input.consume().filter(move |x| f(x, n) % n == i);
                input.with(ds)
            })
            .collect()
    }
}

/// The distinct elements (Beam's `Distinct`).
#[derive(Debug, Clone, Copy)]
pub struct Distinct;

impl<T: Data> PTransform<PCollection<T>> for Distinct {
    type Out = PCollection<T>;
    fn expand(self, input: PCollection<T>) -> PCollection<T> {
        let ds = input.consume().distinct();
        input.with(ds)
    }
}

/// Spreads the elements evenly over the workers — the threads locally, the
/// task slots on a cluster (Beam's `Reshuffle`):
/// breaks fusion after a step that made few, large partitions.
#[derive(Debug, Clone, Copy)]
pub struct Reshuffle;

impl<T: Data> PTransform<PCollection<T>> for Reshuffle {
    type Out = PCollection<T>;
    fn expand(self, input: PCollection<T>) -> PCollection<T> {
        // The session's parallelism: the threads locally, the task slots on a
        // cluster.
        let n = input
            .pipeline()
            .context()
            .session()
            .copied_config()
            .target_partitions();
        let ds = input.consume().repartition(n);
        input.with(ds)
    }
}
