# packer/stage1.pkr.hcl: stage 1 AMI (the base image: users, directories,
# config files; no Postgres yet) for x86_64 and arm64 with amazon-ebs.
# stagehand runs stages/stage1.yml against the instance Packer booted,
# from a shell-local provisioner; a shell-local post-processor gates the
# build on the report, and the manifest post-processor records it.
#
#   packer build -only=amazon-ebs.arm64 \
#     -var postgres_version=15.8.1.004 -var postgres_major=15 \
#     packer/stage1.pkr.hcl
#
# Run it from the repository root. See packer/README.md.

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "ami_name" {
  type        = string
  default     = "supabase-postgres"
  description = "Name prefix; the AMI is <ami_name>-<postgres_version>-<arch>-stage-1."
}

variable "postgres_version" {
  type        = string
  description = "Release version, e.g. 15.8.1.004; part of the AMI name."
}

variable "postgres_major" {
  type        = string
  default     = "15"
  description = "Passed to the manifest as --var pg_major=N."
}

variable "git_sha" {
  type    = string
  default = ""
}

variable "instance_type" {
  type = map(string)
  default = {
    x86_64 = "c6i.4xlarge"
    arm64  = "c6g.4xlarge"
  }
}

variable "source_ami_name" {
  type        = map(string)
  description = "Name filter of the base AMI, per arch."
  default = {
    x86_64 = "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-*"
    arm64  = "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-arm64-server-*"
  }
}

variable "source_ami_owners" {
  type    = list(string)
  default = ["099720109477"] # Canonical
}

variable "ssh_username" {
  type    = string
  default = "ubuntu"
}

variable "ssh_interface" {
  type        = string
  default     = ""
  description = "public_ip, private_ip, public_dns or private_dns; empty lets Packer choose."
}

variable "ssh_keypair_name" {
  type        = string
  default     = ""
  description = "An existing EC2 key pair instead of Packer's temporary one; give ssh_private_key_file with it."
}

variable "ssh_private_key_file" {
  type        = string
  default     = ""
  description = "Private key of ssh_keypair_name; stagehand uses it when Packer leaves build.SSHPrivateKey empty."
}

variable "root_volume_size" {
  type    = number
  default = 10
}

variable "force_deregister" {
  type    = bool
  default = false
}

variable "stagehand_bin" {
  type    = string
  default = "stagehand"
}

variable "stage1_manifest" {
  type    = string
  default = "stages/stage1.yml"
}

variable "stagehand_args" {
  type        = list(string)
  default     = []
  description = "More stagehand arguments, e.g. [\"--var\", \"k=v\"]."
}

variable "report_root" {
  type    = string
  default = "stagehand-report"
}

variable "manifest_output" {
  type    = string
  default = "packer-manifest.json"
}

locals {
  provision = "'${replace(path.root, "'", "'\\''")}/stagehand-provision.sh'"
  gate      = "'${replace(path.root, "'", "'\\''")}/stagehand-gate.sh'"
  run_name  = "${var.ami_name}-${var.postgres_version}"
  run_dir   = "${var.report_root}/pg${var.postgres_major}"
  e_run_dir = replace(local.run_dir, "'", "'\\''") # for use inside '...'

  q_stagehand = "'${replace(var.stagehand_bin, "'", "'\\''")}'"
  q_manifest  = "'${replace(var.stage1_manifest, "'", "'\\''")}'"
  q_key_file  = "'${replace(var.ssh_private_key_file, "'", "'\\''")}'"
  q_extra = join(" ", concat(
    ["--var", "'pg_major=${replace(var.postgres_major, "'", "'\\''")}'"],
    [for a in var.stagehand_args : "'${replace(a, "'", "'\\''")}'"]
  ))

  tags = {
    postgresVersion = var.postgres_version
    postgresMajor   = var.postgres_major
    sourceSha       = var.git_sha
    stage           = "1"
  }
}

# One source for both arches: what differs per arch is set in the build
# block's `source` entries below (Packer 1.6.6 refuses an argument set in
# both places).
source "amazon-ebs" "base" {
  region = var.region
  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.root_volume_size
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  communicator  = "ssh"
  ssh_username  = var.ssh_username
  ssh_interface = var.ssh_interface
  ssh_timeout   = "10m"
  # libssh2 1.10 cannot sign with rsa-sha2, which OpenSSH 8.8+ requires:
  # Packer's temporary key pair must not be RSA.
  temporary_key_pair_type   = "ed25519"
  ssh_keypair_name          = var.ssh_keypair_name
  ssh_private_key_file      = var.ssh_private_key_file
  ssh_clear_authorized_keys = true

  force_deregister      = var.force_deregister
  force_delete_snapshot = var.force_deregister
}

build {
  source "source.amazon-ebs.base" {
    name          = "x86_64"
    ami_name      = "${local.run_name}-x86_64-stage-1"
    instance_type = var.instance_type["x86_64"]
    source_ami_filter {
      filters = {
        name                = var.source_ami_name["x86_64"]
        architecture        = "x86_64"
        root-device-type    = "ebs"
        virtualization-type = "hvm"
      }
      owners      = var.source_ami_owners
      most_recent = true
    }
    tags     = merge(local.tags, { arch = "x86_64" })
    run_tags = merge(local.tags, { arch = "x86_64", Name = "${local.run_name}-x86_64-stage-1-build" })
  }
  source "source.amazon-ebs.base" {
    name          = "arm64"
    ami_name      = "${local.run_name}-arm64-stage-1"
    instance_type = var.instance_type["arm64"]
    source_ami_filter {
      filters = {
        name                = var.source_ami_name["arm64"]
        architecture        = "arm64"
        root-device-type    = "ebs"
        virtualization-type = "hvm"
      }
      owners      = var.source_ami_owners
      most_recent = true
    }
    tags     = merge(local.tags, { arch = "arm64" })
    run_tags = merge(local.tags, { arch = "arm64", Name = "${local.run_name}-arm64-stage-1-build" })
  }

  # The instance is fresh and its host key unknown in advance: stagehand
  # accepts the key it is shown (recorded in the report; see the README).
  # The key text Packer generated goes into the script Packer writes (a
  # 0700 temp file) and from there into the environment, never on a
  # command line: Packer 1.6.6 puts environment_vars on the /bin/sh -c
  # command line and in PACKER_LOG.
  provisioner "shell-local" {
    inline = [
      "STAGEHAND_SSH_KEY=$(cat <<'STAGEHAND_KEY_EOF'\n${build.SSHPrivateKey}\nSTAGEHAND_KEY_EOF\n)",
      "export STAGEHAND_SSH_KEY",
      "exec ${local.provision} --stagehand ${local.q_stagehand} --manifest ${local.q_manifest} --report '${local.e_run_dir}-${source.name}/stage1' --host '${build.Host}' --port '${build.Port}' --user '${build.User}' --key-file ${local.q_key_file} --accept-new-host-key -- ${local.q_extra}",
    ]
  }

  post-processors {
    post-processor "shell-local" {
      inline = ["${local.gate} --stagehand ${local.q_stagehand} '${local.e_run_dir}-${source.name}/stage1'"]
    }

    # Re-evaluated by Packer 1.6.6 when it runs, after the provisioner:
    # file() then reads this build's report.
    post-processor "manifest" {
      output     = var.manifest_output
      strip_path = true
      custom_data = {
        arch                = source.name
        postgres_version    = var.postgres_version
        postgres_major      = var.postgres_major
        target_system       = try(jsondecode(file("${local.run_dir}-${source.name}/stage1/results.json")).target.system, "")
        stage1_manifest     = var.stage1_manifest
        stage1_report       = "${local.run_dir}-${source.name}/stage1"
        stage1_status       = try(jsondecode(file("${local.run_dir}-${source.name}/stage1/results.json")).status, "missing")
        stage1_closure_root = try(jsondecode(file("${local.run_dir}-${source.name}/stage1/results.json")).closure.root, "")
      }
    }
  }
}
