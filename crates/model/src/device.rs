//! Which backend a command runs on, from the `--device` flag every binary shares:
//! `cpu` (burn-flex), `wgpu` (the adapter wgpu ranks best), `wgpu:N` or a bare `N` (the N-th hardware
//! adapter, as Ultralytics' `--device 0`), `wgpu:cpu` (a software rasterizer such as Mesa's lavapipe, only on
//! request: it is ~100x slower than burn-flex), `cuda` / `cuda:N` (builds with the `cuda` feature) and `auto`
//! (the first hardware GPU, else the CPU). A comma list (`0,1`, `cuda:0,1`, `cpu,cpu`) names the devices of
//! data-parallel training, as Ultralytics' `--device 0,1`.

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
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "cpu" | "flex" => Ok(cpu("")),
        "auto" | "" => Ok(auto()),
        other if other.starts_with("cuda") => cuda::pick(
            other.trim_start_matches("cuda").trim_start_matches(':'),
            other,
        ),
        other => {
            let spec = other
                .strip_prefix("wgpu")
                .map(|s| s.trim_start_matches(':'));
            let spec = match (spec, other.parse::<usize>()) {
                (Some(s), _) => s.to_string(),
                (None, Ok(_)) => other.to_string(),
                (None, Err(_)) => {
                    return Err(ModelError::Other(format!(
                        "--device {other}: expected auto, cpu, wgpu, wgpu:N, N, wgpu:cpu, cuda or cuda:N (a comma list for several devices)"
                    )))
                }
            };
            gpu::pick(&spec, other)
        }
    }
}

/// [`pick`], printing the reason line: what the binaries call.
pub fn select(name: &str) -> Result<Device> {
    if name.contains(',') {
        return Err(ModelError::Other(format!(
            "--device {name}: this command runs on one device (several only for training)"
        )));
    }
    let picked = pick(name)?;
    eprintln!("{}", picked.reason);
    Ok(picked.device)
}

/// Resolves a comma list of devices: `0,1` (hardware GPUs 0 and 1), `cuda:0,1` or `wgpu:0,1` (the prefix
/// carries over to the bare numbers after it), `cpu,cpu` (two replicas on the CPU, for testing). One name
/// gives one device.
pub fn pick_all(name: &str) -> Result<Vec<Picked>> {
    let mut prefix = "";
    let mut out = vec![];
    for part in name.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(ModelError::Other(format!(
                "--device {name}: an empty entry in the list"
            )));
        }
        let full = match part.split_once(':') {
            Some((p, _)) => {
                prefix = if p.eq_ignore_ascii_case("cuda") {
                    "cuda:"
                } else if p.eq_ignore_ascii_case("wgpu") {
                    "wgpu:"
                } else {
                    ""
                };
                part.to_string()
            }
            None if part.parse::<usize>().is_ok() => format!("{prefix}{part}"),
            None => {
                prefix = "";
                part.to_string()
            }
        };
        out.push(pick(&full)?);
    }
    Ok(out)
}

/// [`pick_all`], printing one reason line per device.
pub fn select_all(name: &str) -> Result<Vec<Device>> {
    let picked = pick_all(name)?;
    for (i, p) in picked.iter().enumerate() {
        match picked.len() {
            1 => eprintln!("{}", p.reason),
            _ => eprintln!("replica {i}: {}", p.reason),
        }
    }
    Ok(picked.into_iter().map(|p| p.device).collect())
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

#[cfg(feature = "cuda")]
mod cuda {
    use super::{ModelError, Picked, Result};
    use burn::tensor::{Device, DeviceType};

    pub fn pick(spec: &str, flag: &str) -> Result<Picked> {
        let i: usize = match spec {
            "" => 0,
            n => n.parse().map_err(|_| {
                ModelError::Other(format!("--device {flag}: expected cuda or cuda:N"))
            })?,
        };
        let found = Device::enumerate(DeviceType::Cuda).into_iter().count();
        if i >= found {
            return Err(ModelError::Other(format!(
                "--device {flag}: there is no CUDA device {i} ({found} found; is the NVIDIA driver loaded?)"
            )));
        }
        let device = Device::cuda(i);
        let name = device
            .identity()
            .map(|d| d.name)
            .unwrap_or_else(|| "unnamed device".into());
        Ok(Picked {
            device,
            reason: format!("device: cuda:{i} ({name})"),
            gpu: true,
        })
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::{ModelError, Picked, Result};

    pub fn pick(_spec: &str, flag: &str) -> Result<Picked> {
        Err(ModelError::Other(format!(
            "--device {flag}: this binary was built without the `cuda` feature; rebuild with `--features cuda` \
             (README: CUDA), or use --device wgpu:N on the same GPU"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::{pick, pick_all, select};

    #[test]
    fn cpu_and_bad_names() {
        assert!(!pick("cpu").unwrap().gpu);
        let e = pick("tpu:0").err().unwrap().to_string();
        assert!(e.contains("expected auto, cpu"), "{e}");
        let e = pick("wgpu:x").err().unwrap().to_string();
        assert!(e.starts_with("--device wgpu:x: "), "{e}");
    }

    #[test]
    fn lists() {
        assert_eq!(pick_all("cpu,cpu").unwrap().len(), 2);
        assert_eq!(pick_all("cpu").unwrap().len(), 1);
        let e = pick_all("cpu,,cpu").err().unwrap().to_string();
        assert!(e.contains("empty entry"), "{e}");
        let e = select("cpu,cpu").err().unwrap().to_string();
        assert!(e.contains("one device"), "{e}");
        #[cfg(not(feature = "cuda"))]
        {
            let e = pick_all("cuda:0,1").err().unwrap().to_string();
            assert!(e.contains("without the `cuda` feature"), "{e}");
        }
    }
}
