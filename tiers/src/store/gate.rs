//! The single-flight gate of a chunk read below hot: concurrent misses of one chunk wait at it,
//! so the chunk is fetched, promoted and repaired once.

use std::sync::Arc;

use super::Engine;
use crate::meta::ChunkKey;

/// A chunk's single-flight gate, held while it is fetched below hot and until its promotion
/// and repairs are done (`repair::follow_up`), so a concurrent reader finds it promoted.
pub(super) struct Gate {
    engine: Arc<Engine>,
    key: ChunkKey,
    _permit: tokio::sync::OwnedMutexGuard<()>,
}

impl Gate {
    pub(super) async fn acquire(engine: &Arc<Engine>, key: ChunkKey) -> Self {
        let permit = engine.gate(key).lock_owned().await;
        Self {
            engine: engine.clone(),
            key,
            _permit: permit,
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // The permit holds one reference to the gate.
        self.engine.release_gate(self.key, 1);
    }
}
