//! Reading the catalog from disk: catalog files (or directories scanned for `*.yaml`/`*.yml`),
//! runbook directories (`*.md`), and a polling watcher that reloads when any of them changes.
//! Loading never fails: what cannot be read becomes a `CatalogProblem` and the rest loads.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::model::{Catalog, CatalogProblem, Entity, Runbook, parse_file};
use super::{CatalogHandle, SERVICES_URI, service_uri};
use crate::{Change, ChangeFeed};

/// Catalog files larger than this are refused: a catalog-info.yaml is a few kilobytes, and a
/// runaway file must not take the server's memory.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Directories are scanned this deep at most (a symbolic-link loop ends here too).
const MAX_DEPTH: usize = 16;

/// Where the catalog comes from, resolved against the config file's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogSources {
    /// Catalog files, or directories scanned recursively for `*.yaml` and `*.yml`.
    pub paths: Vec<PathBuf>,
    /// Directories of Markdown runbooks; a runbook's id is its path below the directory
    /// without `.md`.
    pub runbooks: Vec<PathBuf>,
}

/// A file found, with its metadata (or why there is none), taken when it was found.
type Found = (PathBuf, std::io::Result<Metadata>);

/// Files below `dir` whose extension is one of `extensions`, in path order, each with its
/// metadata; an unreadable directory is a problem. Each entry is looked at once: its metadata
/// (following symbolic links) says whether it is a directory, and is kept for a file.
fn scan(dir: &Path, extensions: &[&str], depth: usize, files: &mut Vec<Found>, problems: &mut Vec<CatalogProblem>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(CatalogProblem::error(
                &dir.display().to_string(),
                None,
                format!("cannot read directory: {error}"),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        let metadata = std::fs::metadata(&path);
        if metadata.as_ref().is_ok_and(Metadata::is_dir) {
            if depth < MAX_DEPTH {
                scan(&path, extensions, depth + 1, files, problems);
            }
        } else if path.extension().is_some_and(|extension| extensions.iter().any(|wanted| extension == *wanted)) {
            files.push((path, metadata));
        }
    }
}

/// Every file the sources name now, each with its metadata (or why there is none), and the
/// problems of finding them. The one walk a load and the watcher's look both make: the look's
/// fingerprint is taken from it, and on a change the same listing is read.
struct Listing {
    catalog_files: Vec<Found>,
    catalog_problems: Vec<CatalogProblem>,
    /// Each runbook file with its directory.
    runbook_files: Vec<(PathBuf, PathBuf, std::io::Result<Metadata>)>,
    runbook_problems: Vec<CatalogProblem>,
}

impl Listing {
    fn new(sources: &CatalogSources) -> Listing {
        let mut catalog_files = Vec::new();
        let mut catalog_problems = Vec::new();
        for path in &sources.paths {
            match std::fs::metadata(path) {
                Ok(metadata) if metadata.is_dir() => {
                    scan(path, &["yaml", "yml"], 0, &mut catalog_files, &mut catalog_problems);
                }
                Ok(metadata) => catalog_files.push((path.clone(), Ok(metadata))),
                Err(_) => catalog_problems.push(CatalogProblem::error(
                    &path.display().to_string(),
                    None,
                    "no such file or directory",
                )),
            }
        }
        let mut runbook_files = Vec::new();
        let mut runbook_problems = Vec::new();
        for dir in &sources.runbooks {
            let mut files = Vec::new();
            scan(dir, &["md"], 0, &mut files, &mut runbook_problems);
            runbook_files.extend(files.into_iter().map(|(file, metadata)| (dir.clone(), file, metadata)));
        }
        Listing { catalog_files, catalog_problems, runbook_files, runbook_problems }
    }

    fn fingerprint(&self) -> Fingerprint {
        let files = self
            .catalog_files
            .iter()
            .map(|(file, metadata)| (file, metadata))
            .chain(self.runbook_files.iter().map(|(_, file, metadata)| (file, metadata)))
            .map(|(file, metadata)| {
                let metadata = metadata.as_ref().ok();
                let modified = metadata.and_then(|metadata| metadata.modified().ok());
                (file.clone(), modified, metadata.map_or(0, Metadata::len))
            });
        let missing = self
            .catalog_problems
            .iter()
            .chain(&self.runbook_problems)
            .map(|problem| (PathBuf::from(&problem.file), None, 0));
        Fingerprint(files.chain(missing).collect())
    }

    /// Reads the files listed into a catalog. Blocking: call it from a blocking context.
    fn read(self) -> Catalog {
        let Listing { catalog_files, catalog_problems: mut problems, runbook_files, runbook_problems } = self;
        let mut entities: Vec<Entity> = Vec::new();
        for (file, metadata) in catalog_files {
            let name = file.display().to_string();
            match read_text(&file, &metadata) {
                Ok(text) => {
                    let (found, found_problems) = parse_file(&text, &name);
                    entities.extend(found);
                    problems.extend(found_problems);
                }
                Err(message) => problems.push(CatalogProblem::error(&name, None, message)),
            }
        }
        problems.extend(runbook_problems);
        let mut runbooks = Vec::new();
        for (dir, file, metadata) in runbook_files {
            let name = file.display().to_string();
            let Some(id) = runbook_id(&dir, &file) else { continue };
            match read_text(&file, &metadata) {
                Ok(text) => runbooks.push(Runbook::new(id, text, name)),
                Err(message) => problems.push(CatalogProblem::error(&name, None, message)),
            }
        }
        Catalog::build(entities, runbooks, problems)
    }
}

/// What the sources looked like: every file with its modification time and size, and the paths
/// that could not be looked at. Equal fingerprints mean there is nothing new to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, Option<SystemTime>, u64)>);

/// The text of a file whose metadata was taken when it was listed.
fn read_text(path: &Path, metadata: &std::io::Result<Metadata>) -> Result<String, String> {
    let size = metadata.as_ref().map_err(|error| format!("cannot read: {error}"))?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!("is {size} bytes, more than the {MAX_FILE_BYTES} a catalog file may have"));
    }
    std::fs::read_to_string(path).map_err(|error| format!("cannot read: {error}"))
}

/// Reads the catalog, and says what it read: the files' fingerprint, taken as they were listed,
/// before they were read (an edit made while they are read then shows at the watcher's next look).
/// Blocking: call it from a blocking context.
pub(super) fn load_with_fingerprint(sources: &CatalogSources) -> (Catalog, Fingerprint) {
    let listing = Listing::new(sources);
    let fingerprint = listing.fingerprint();
    (listing.read(), fingerprint)
}

/// `runbooks/payments/high-error-rate.md` below `runbooks/` ⇒ `payments/high-error-rate`.
fn runbook_id(dir: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(dir).ok()?.with_extension("");
    let parts: Vec<String> =
        relative.components().map(|component| component.as_os_str().to_string_lossy().into_owned()).collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Loads the catalog off the async threads, with the fingerprint of what it read.
pub async fn load_async(sources: CatalogSources) -> (Catalog, Fingerprint) {
    let first = first_path(&sources);
    off_thread(first, move || load_with_fingerprint(&sources)).await
}

/// The first catalog path, which a failed load's problem names.
fn first_path(sources: &CatalogSources) -> String {
    sources.paths.first().map(|path| path.display().to_string()).unwrap_or_default()
}

/// Runs `load` off the async threads. If it panics, the catalog is that problem alone (on
/// `first_path`), with an empty fingerprint: the watcher's next look then tries again.
async fn off_thread(
    first_path: String,
    load: impl FnOnce() -> (Catalog, Fingerprint) + Send + 'static,
) -> (Catalog, Fingerprint) {
    match tokio::task::spawn_blocking(load).await {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(%error, "catalog load panicked");
            let problem = CatalogProblem::error(&first_path, None, format!("loading the catalog failed: {error}"));
            (Catalog::build(Vec::new(), Vec::new(), vec![problem]), Fingerprint::default())
        }
    }
}

/// Every `interval`, compares the sources' fingerprint with `loaded`'s, the fingerprint of the
/// catalog in `handle` (then with that of the last catalog loaded); when it changed, reads the
/// listing that look made (so the fingerprint is of what is read, taken before it is read) and
/// swaps the catalog in, indexes the runbooks again in `store`, then announces on `changes` the
/// resources that changed. A file that no longer parses is a problem in the new catalog, and
/// the other files' entities stay. Stops with the runtime (or when the handle is aborted).
pub fn watch(
    handle: CatalogHandle,
    sources: CatalogSources,
    loaded: Fingerprint,
    interval: Duration,
    changes: Option<ChangeFeed>,
    store: Option<opsgate_store::Store>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = loaded;
        loop {
            tokio::time::sleep(interval).await;
            let look_sources = sources.clone();
            let looked = tokio::task::spawn_blocking(move || {
                let listing = Listing::new(&look_sources);
                (listing.fingerprint(), listing)
            })
            .await;
            // A look that panicked has no listing: an empty fingerprint, then a whole load.
            let (now, listing) = match looked {
                Ok((now, listing)) => (now, Some(listing)),
                Err(_) => (Fingerprint::default(), None),
            };
            if now == last {
                continue;
            }
            let (catalog, read) = match listing {
                Some(listing) => off_thread(first_path(&sources), move || (listing.read(), now)).await,
                None => load_async(sources.clone()).await,
            };
            last = read;
            let catalog = Arc::new(catalog);
            let previous = handle.replace(catalog.clone());
            tracing::info!(
                n_entities = catalog.entities().count(),
                n_runbooks = catalog.runbooks().count(),
                n_problems = catalog.problems().len(),
                "catalog reloaded"
            );
            for problem in catalog.problems() {
                tracing::warn!(%problem, "service catalog");
            }
            // Indexed before announced: a client that searches on hearing of the change finds
            // the new runbooks.
            if let Some(store) = &store {
                super::index_runbooks(store, &catalog).await;
            }
            if let Some(changes) = &changes {
                announce(changes, &previous, &catalog);
            }
        }
    })
}

/// Tells subscribers what a reload changed: the service list, each service whose entity
/// changed, and the resource list when runbooks came or went.
fn announce(changes: &ChangeFeed, before: &Catalog, after: &Catalog) {
    changes.publish(Change::ResourceUpdated { uri: SERVICES_URI.to_string() });
    let names = |catalog: &Catalog| -> Vec<String> { catalog.runbooks().map(|runbook| runbook.id.clone()).collect() };
    if names(before) != names(after) {
        changes.publish(Change::ResourcesListChanged);
    }
    for entity in after.entities() {
        if before.get(&entity.entity_ref()) != Some(entity) {
            changes.publish(Change::ResourceUpdated { uri: service_uri(&entity.name) });
        }
    }
    for entity in before.entities() {
        if after.get(&entity.entity_ref()).is_none() {
            changes.publish(Change::ResourceUpdated { uri: service_uri(&entity.name) });
        }
    }
}
