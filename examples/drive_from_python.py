"""Drive wmtool from Python: train, watermark, attack and verify on the embedded digits data.

Run: python examples/drive_from_python.py
"""

from wmtool.data import load_dataset
from wmtool.run import Run
from wmtool.workflows import attack_model, embed_watermark, make_key, train_model, verify_suspect


def main() -> None:
    run = Run(device="cpu", seed=0)
    data = load_dataset("digits", "train")
    clean = train_model(run, "ewe-cnn", {}, data, epochs=15, batch_size=64, lr=1e-3, optimizer="adam",
                        validation=0.1).model
    outcome = embed_watermark(run, "backdoor", {"epochs": 3}, data, clean, pretrained=True)
    key = make_key(run, "backdoor", outcome, model_sha256="0" * 64)  # not saved here, so no file hash
    attacked, _, seconds = attack_model(run, "finetune", {"epochs": 2}, outcome.model, data)
    for label, model in (("marked", outcome.model), ("fine-tuned", attacked.model)):
        result, _ = verify_suspect(run, key, model, alpha=0.01, test="binomial", queries=None)
        print(f"{label}: success {result.success_rate:.2f}, p = {result.p_value:.2e}, claimed: {result.claimed}")


if __name__ == "__main__":
    main()
