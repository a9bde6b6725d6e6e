//! Multi-object tracking as Ultralytics' track mode does it: ByteTrack and BoT-SORT (without ReID, camera
//! motion compensation `none` or `sparseOptFlow`), configured by Ultralytics' tracker YAMLs, fed one frame's
//! detections (and the frame, for the camera motion) at a time. The association follows the package step by
//! step (float32 costs, float64 Kalman filters, Jonker-Volgenant assignment with a cost limit), so the same
//! detections give the same ids.

pub mod config;
pub mod gmc;
pub mod kalman;
pub mod matching;
pub mod tracker;

pub use config::{ConfigError, GmcMethod, TrackerConfig, TrackerType};
pub use gmc::Frame;
pub use tracker::{Detection, TrackedBox, Tracker};
