//! Which backend a command runs on, from the `--device` flag every binary shares:
//! `cpu` (burn-flex), `wgpu` (the adapter wgpu ranks best), `wgpu:N` or a bare `N` (the N-th hardware
//! adapter, as Ultralytics' `--device 0`), `wgpu:cpu` (a software rasterizer such as Mesa's lavapipe, only on
//! request: it is ~100x slower than burn-flex) and `auto` (the first hardware GPU, else the CPU).

use crate::error::{ModelError, Result};
use burn::tensor::Device;

/// The chosen device and a line saying what it is and why it was chosen.
pub struct Picked {
    pub device: Device,
    pub reason: String,
    pub gpu: bool,
}

fn cpu(reason: &str) -> Picked {
    Picked {
        device: Device::flex(),
        reason: format!("device: cpu (burn-flex, {} threads){reason}", threads()),
        gpu: false,
    }
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Resolves a `--device` value.
pub fn pick(name: &str) -> Result<Picked> {
    // Mesa's Vulkan loader probes Wayland and prints an error for each instance when XDG_RUNTIME_DIR is
    // unset (a server, a container); the probe needs nothing from it. Called at startup, before threads.
    #[cfg(all(feature = "wgpu", unix))]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "cpu" | "flex" => Ok(cpu("")),
        "auto" | "" => Ok(auto()),
        other => {
            let spec = other
                .strip_prefix("wgpu")
                .map(|s| s.trim_start_matches(':'));
            let spec = match (spec, other.parse::<usize>()) {
                (Some(s), _) => s.to_string(),
                (None, Ok(_)) => other.to_string(),
                (None, Err(_)) => {
                    return Err(ModelError::Other(format!(
                        "--device {other}: expected auto, cpu, wgpu, wgpu:N, N or wgpu:cpu"
                    )))
                }
            };
            gpu::pick(&spec, other)
        }
    }
}

/// [`pick`], printing the reason line: what the binaries call.
pub fn select(name: &str) -> Result<Device> {
    let picked = pick(name)?;
    eprintln!("{}", picked.reason);
    Ok(picked.device)
}

#[cfg(feature = "wgpu")]
fn auto() -> Picked {
    match gpu::hardware().into_iter().next() {
        Some((device, label)) => gpu::picked(device, &label, "auto: first hardware GPU adapter"),
        None => cpu(": auto found no hardware GPU adapter through wgpu (Vulkan/Metal/DX12); software adapters such as lavapipe only with --device wgpu:cpu"),
    }
}

#[cfg(not(feature = "wgpu"))]
fn auto() -> Picked {
    cpu(": auto picks the CPU because this binary was built without the `wgpu` feature")
}

#[cfg(feature = "wgpu")]
mod gpu {
    use super::{ModelError, Picked, Result};
    use burn::tensor::{Device, DeviceKind, DeviceType};

    /// Hardware adapters (discrete, then integrated, then virtual GPUs) with a label each.
    pub fn hardware() -> Vec<(Device, String)> {
        let all: Vec<Device> = Device::enumerate(DeviceType::Wgpu).into_iter().collect();
        type Kind = fn(usize) -> DeviceKind;
        let kinds: [(Kind, &str); 3] = [
            (DeviceKind::DiscreteGpu, "discrete GPU"),
            (DeviceKind::IntegratedGpu, "integrated GPU"),
            (DeviceKind::VirtualGpu, "virtual GPU"),
        ];
        let mut out = vec![];
        for (make, label) in kinds {
            for i in 0..all.len() {
                let d = Device::wgpu(make(i));
                if all.contains(&d) {
                    out.push((d, format!("{label} {i}")));
                }
            }
        }
        out
    }

    pub fn picked(device: Device, label: &str, why: &str) -> Picked {
        let name = device
            .identity()
            .map(|i| i.name)
            .unwrap_or_else(|| "unnamed adapter".into());
        Picked {
            device,
            reason: format!("device: wgpu {label} ({name}); {why}"),
            gpu: true,
        }
    }

    pub fn pick(spec: &str, flag: &str) -> Result<Picked> {
        match spec {
            "" => {
                let any = Device::enumerate(DeviceType::Wgpu)
                    .into_iter()
                    .next()
                    .is_some();
                if !any {
                    return Err(ModelError::Other(format!(
                        "--device {flag}: wgpu finds no adapter (no Vulkan/Metal/DX12 driver?); use --device cpu"
                    )));
                }
                Ok(picked(
                    Device::wgpu(DeviceKind::DefaultDevice),
                    "default adapter",
                    "as requested",
                ))
            }
            "cpu" => Ok(picked(
                Device::wgpu(DeviceKind::Cpu),
                "software adapter",
                "as requested (slow: for testing the wgpu path)",
            )),
            n => {
                let i: usize = n.parse().map_err(|_| {
                    ModelError::Other(format!(
                        "--device {flag}: expected wgpu, wgpu:N (a GPU index) or wgpu:cpu"
                    ))
                })?;
                let mut hw = hardware();
                let found = hw.len();
                if i >= found {
                    return Err(ModelError::Other(format!(
                        "--device {flag}: there is no hardware GPU adapter {i} ({found} found)"
                    )));
                }
                let (d, label) = hw.swap_remove(i);
                Ok(picked(d, &label, "as requested"))
            }
        }
    }
}

#[cfg(not(feature = "wgpu"))]
mod gpu {
    use super::{ModelError, Picked, Result};

    pub fn pick(_spec: &str, flag: &str) -> Result<Picked> {
        Err(ModelError::Other(format!(
            "--device {flag}: this binary was built without the `wgpu` feature (CPU only); rebuild with default features"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn cpu_and_bad_names() {
        assert!(!pick("cpu").unwrap().gpu);
        let e = pick("cuda:0").err().unwrap().to_string();
        assert!(e.contains("expected auto, cpu"), "{e}");
        let e = pick("wgpu:x").err().unwrap().to_string();
        assert!(e.starts_with("--device wgpu:x: "), "{e}");
    }
}
