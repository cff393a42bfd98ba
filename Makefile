# Image builds (docs/kubernetes.md). REGISTRY: where to push; the tag is the project's version from pyproject.toml.
REGISTRY ?= ghcr.io/your-org
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE := $(REGISTRY)/ragsweep

.PHONY: images image-cpu image-gpu push lock

images: image-cpu image-gpu

image-cpu:
	docker build --build-arg VARIANT=cpu -t $(IMAGE):$(VERSION)-cpu .

image-gpu:
	docker build --build-arg VARIANT=gpu -t $(IMAGE):$(VERSION)-gpu .

# Pushes both tags and prints each digest: put them under `images:` in k8s/kustomization.yaml (digest: sha256:...).
push: images
	docker push $(IMAGE):$(VERSION)-cpu
	docker push $(IMAGE):$(VERSION)-gpu
	@docker inspect --format '{{index .RepoDigests 0}}' $(IMAGE):$(VERSION)-cpu $(IMAGE):$(VERSION)-gpu

# Regenerates constraints.txt from scripts/lock-inputs.txt.
lock:
	bash scripts/lock.sh
