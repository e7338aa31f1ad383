#!/usr/bin/env bash
# The GPU check (issue #15, point 4): at most about 8 minutes on one GPU. Its CPU parts run anywhere.
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# 1. the tests marked for CUDA (bf16 autocast, channels_last, cached and online teacher, resume, torchrun/NCCL);
# 2. training images/s at 224 with bf16 through cqdkit (JPEGs of CUB's size, DataLoader workers, caches)
#    against a bare forward+backward loop of the same model on the same GPU, for vggm and resnet50;
# 3. the data pipeline alone, with and without the decoded-image cache (inside step 2's figures).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-runs/gpu-check}}
mkdir -p "$out"
workers=$(( $(nproc) > 8 ? 8 : $(nproc) ))
echo "== environment" | tee "$out/summary.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" | tee -a "$out/summary.txt"
echo "== pytest -m cuda" | tee -a "$out/summary.txt"
timeout 240 python -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -15 | tee -a "$out/summary.txt"
device=$(python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
for model in vggm resnet50; do
  echo "== throughput $model at 224, bf16, $workers workers, on $device" | tee -a "$out/summary.txt"
  if [ "$device" = cuda ]; then
    timeout 150 python benchmarks/gpu_throughput.py --model "$model" --size 224 --images 768 --batch-size 128 \
      --workers "$workers" --epochs 2 --device cuda --json "$out/throughput-$model.json" 2>&1 | tail -20 | tee -a "$out/summary.txt"
  else  # the CPU part: the same code on a small model and few images
    timeout 150 python benchmarks/gpu_throughput.py --model convnet-s --size 64 --images 64 --batch-size 16 \
      --workers 0 --epochs 1 --device cpu --json "$out/throughput-cpu.json" 2>&1 | tail -20 | tee -a "$out/summary.txt"
    break
  fi
done
echo "written to $out/summary.txt"
