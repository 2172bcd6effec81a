//! Face scanning, as the pipeline sees it: a [`Detector`] looks at an image and says whether
//! it could show a person's face. This build has no face model, so [`Unavailable`] answers
//! `not_scanned` with its reason: never a fake "no face". Results carry boxes and scores,
//! never pixels; callers log counts only.

use serde::{Deserialize, Serialize};

/// Whether an image could identify a person by their face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A face at or above the high threshold.
    Identifiable,
    /// Only faces between the low and the high threshold.
    Uncertain,
    /// Looked, and found no face.
    None,
    /// Could not look (no model, an image it cannot decode).
    NotScanned,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Identifiable => "identifiable",
            Verdict::Uncertain => "uncertain",
            Verdict::None => "none",
            Verdict::NotScanned => "not_scanned",
        }
    }
}

/// One face found: its box in image pixels (upright) and the detector's score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Face {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scan {
    pub verdict: Verdict,
    pub faces: Vec<Face>,
    /// SHA-256 of the model that looked; empty when none did.
    pub model_sha256: String,
    /// Why the image was not scanned.
    pub reason: Option<String>,
}

impl Scan {
    pub fn not_scanned(reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::NotScanned,
            faces: Vec::new(),
            model_sha256: String::new(),
            reason: Some(reason.into()),
        }
    }
}

pub trait Detector: Send + Sync {
    /// Scan an image (the original bytes: the detector reads its orientation itself).
    fn scan(&self, image: &[u8]) -> Scan;

    /// `Err(reason)` when every scan would be `not_scanned` (for `/readyz`).
    ///
    /// # Errors
    /// The reason the detector cannot work.
    fn ready(&self) -> Result<(), String>;
}

/// The detector of a build or deployment without a face model.
pub struct Unavailable(pub String);

impl Detector for Unavailable {
    fn scan(&self, _image: &[u8]) -> Scan {
        Scan::not_scanned(self.0.clone())
    }

    fn ready(&self) -> Result<(), String> {
        Err(self.0.clone())
    }
}
