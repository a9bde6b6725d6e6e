//! Ultralytics' `key=value` arguments rewritten as our `--key value` flags.

/// Rewrites `key=value` arguments after the verb: `save_txt=True` -> `--save-txt true` (every boolean flag takes
/// `true|false`, so `fuse=False` turns a default-on flag off), `imgsz=320` -> `--imgsz 320`, `model=` -> `--model`
/// (a YAML or a weights file, by its extension). A leading task word (`yolo detect predict ...`,
/// `yolo classify val ...`) is skipped: the model's head says what it does; `--flags` pass as they are.
pub fn translate(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut it = args.into_iter();
    let mut out: Vec<String> = it.next().into_iter().collect();
    let mut rest: Vec<String> = it.collect();
    if rest
        .first()
        .is_some_and(|t| t == "detect" || t == "classify")
    {
        rest.remove(0);
    }
    for (i, a) in rest.into_iter().enumerate() {
        let kv = (i > 0 && !a.starts_with('-'))
            .then(|| a.split_once('='))
            .flatten()
            .filter(|(k, _)| {
                k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        let Some((key, value)) = kv else {
            out.push(a);
            continue;
        };
        let key = key.replace('_', "-");
        match value {
            "True" | "true" => out.extend([format!("--{key}"), "true".into()]),
            "False" | "false" => out.extend([format!("--{key}"), "false".into()]),
            // `--key=-0.5`: a value starting with `-` would otherwise read as a flag.
            v if v.starts_with('-') => out.push(format!("--{key}={v}")),
            v => out.extend([format!("--{key}"), v.to_string()]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::translate;

    fn t(s: &str) -> Vec<String> {
        translate(s.split(' ').map(String::from))
    }

    #[test]
    fn key_value_arguments_become_flags() {
        assert_eq!(
            t("yolo detect predict model=best.pt source=a/b=c.jpg imgsz=320,256 save_txt=True save_conf=False --conf 0.1"),
            t("yolo predict --model best.pt --source a/b=c.jpg --imgsz 320,256 --save-txt true --save-conf false --conf 0.1")
        );
        assert_eq!(
            t("yolo classify val model=best.safetensors data=datasets/trees_cls"),
            t("yolo val --model best.safetensors --data datasets/trees_cls")
        );
        assert_eq!(
            t("yolo train model=yolov8n-mobileone.yaml epochs=3 cos_lr=true val=False"),
            t("yolo train --model yolov8n-mobileone.yaml --epochs 3 --cos-lr true --val false")
        );
        // The verb itself and positional paths are left alone.
        assert_eq!(
            t("yolo convert --from voc VOC/"),
            t("yolo convert --from voc VOC/")
        );
    }
}
