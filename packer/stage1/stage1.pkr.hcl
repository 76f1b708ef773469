# packer/stage1/stage1.pkr.hcl: stage 1 AMI (the base image: users,
# directories, config files; no Postgres yet) for x86_64 and arm64 with
# amazon-ebs. stagehand runs stages/stage1.yml against the instance Packer
# booted, from a shell-local provisioner; a shell-local post-processor
# gates the build on the report, and the manifest post-processor records
# it. Packer 1.7 and later (the release):
#
#   packer init packer/stage1
#   packer build -only=amazon-ebs.arm64 \
#     -var postgres_version=15.8.1.004 -var postgres_major=15 packer/stage1
#
# Packer 1.6.6 (Debian; amazon-ebs built in): give this file alone,
# packer/stage1/stage1.pkr.hcl, since 1.6.6 rejects plugins.pkr.hcl.
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

variable "run_id" {
  type        = string
  default     = ""
  description = "Tagged as stagehandRunId on the instance, its volumes, the AMI and its snapshots; the release workflow's cleanup finds what a run left behind by it."
}

variable "extra_tags" {
  type        = map(string)
  default     = {}
  description = "More tags for the AMI, the instance, its volumes and the snapshots; the template's own tags win."
}

variable "instance_type" {
  type = map(string)
  default = {
    x86_64 = "c6i.4xlarge"
    arm64  = "c6g.4xlarge"
  }
}

variable "source_ami" {
  type        = map(string)
  default     = {}
  description = "Base AMI ID per arch ({arm64 = \"ami-...\"}); an arch without one is found with source_ami_name and source_ami_owners."
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

variable "root_device_name" {
  type        = string
  default     = "/dev/sda1"
  description = "Root device of the base AMI (Ubuntu: /dev/sda1)."
}

variable "root_volume_size" {
  type    = number
  default = 10
}

variable "volume_type" {
  type    = string
  default = "gp3"
}

variable "volume_iops" {
  type        = number
  default     = 3000
  description = "gp3/io1/io2 only; null for other types."
}

variable "volume_throughput" {
  type        = number
  default     = 125
  description = "MiB/s, gp3 only; null for other types."
}

variable "subnet_id" {
  type    = string
  default = ""
}

variable "subnet_filter" {
  type        = map(string)
  default     = {}
  description = "Filters of the subnet to launch in, e.g. {\"tag:Name\" = \"build-*\"}; the one with most free addresses is taken. Ignored with subnet_id."
}

variable "security_group_ids" {
  type        = list(string)
  default     = []
  description = "Empty: Packer makes a temporary group open on port 22 to temporary_security_group_source_cidrs."
}

variable "temporary_security_group_source_cidrs" {
  type    = list(string)
  default = []
}

variable "associate_public_ip_address" {
  type        = bool
  default     = null
  description = "null: the subnet's default. Set true in a subnet that hands out no public address and ssh_interface is public_ip."
}

variable "ssh_interface" {
  type        = string
  default     = ""
  description = "public_ip, private_ip, public_dns, private_dns or session_manager; empty lets Packer choose."
  validation {
    condition     = contains(["", "public_ip", "private_ip", "public_dns", "private_dns", "session_manager"], var.ssh_interface)
    error_message = "The ssh_interface must be public_ip, private_ip, public_dns, private_dns, session_manager or empty."
  }
}

variable "iam_instance_profile" {
  type        = string
  default     = ""
  description = "Instance profile of the build instance; session_manager needs one that allows SSM (AmazonSSMManagedInstanceCore)."
}

variable "session_manager_port" {
  type        = number
  default     = 0
  description = "Local port of the Session Manager tunnel; 0: a free one."
}

variable "ssh_username" {
  type    = string
  default = "ubuntu"
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

variable "require_imdsv2" {
  type        = bool
  default     = true
  description = "Require IMDSv2 tokens on the build instance before stagehand runs (aws ec2 modify-instance-metadata-options; see README)."
}

variable "ami_regions" {
  type        = list(string)
  default     = []
  description = "Regions to copy the AMI to."
}

variable "ami_users" {
  type        = list(string)
  default     = []
  description = "Account IDs that may launch the AMI."
}

variable "ami_groups" {
  type        = list(string)
  default     = []
  description = "Groups that may launch the AMI; [\"all\"] makes it public."
}

variable "encrypt_boot" {
  type    = bool
  default = false
}

variable "kms_key_id" {
  type        = string
  default     = ""
  description = "KMS key of the encrypted AMI; empty: the account's default EBS key."
}

variable "region_kms_key_ids" {
  type        = map(string)
  default     = {}
  description = "KMS key per ami_regions region for encrypted copies."
}

variable "force_deregister" {
  type    = bool
  default = false
}

variable "bastion_host" {
  type        = string
  default     = ""
  description = "A bastion (jump host) that Packer's communicator and stagehand both go through; empty: connect directly. Not with ssh_interface = session_manager."
}

variable "bastion_port" {
  type    = number
  default = 22
}

variable "bastion_username" {
  type        = string
  default     = ""
  description = "User on the bastion; empty: the instance's SSH user."
}

variable "bastion_private_key_file" {
  type        = string
  default     = ""
  description = "Private key file (ed25519 or ECDSA) for the bastion; empty: Packer uses the ssh-agent and stagehand the instance's key."
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
  scripts   = "${path.root}/.."
  provision = "'${replace(local.scripts, "'", "'\\''")}/stagehand-provision.sh'"
  gate      = "'${replace(local.scripts, "'", "'\\''")}/stagehand-gate.sh'"
  run_name  = "${var.ami_name}-${var.postgres_version}"
  run_dir   = "${var.report_root}/pg${var.postgres_major}"
  e_run_dir = replace(local.run_dir, "'", "'\\''") # for use inside '...'

  q_stagehand = "'${replace(var.stagehand_bin, "'", "'\\''")}'"
  q_manifest  = "'${replace(var.stage1_manifest, "'", "'\\''")}'"
  q_key_file  = "'${replace(var.ssh_private_key_file, "'", "'\\''")}'"
  # stagehand-provision.sh's bastion options: the same bastion Packer's
  # communicator uses (ssh_bastion_* in the source).
  bastion_user = var.bastion_username != "" ? var.bastion_username : var.ssh_username
  bastion_args = var.bastion_host == "" ? "" : join(" ", concat(
    ["--bastion-host", "'${replace(var.bastion_host, "'", "'\\''")}'", "--bastion-port", "${var.bastion_port}"],
    ["--bastion-user", "'${replace(local.bastion_user, "'", "'\\''")}'"],
    var.bastion_private_key_file == "" ? [] : ["--bastion-key-file", "'${replace(var.bastion_private_key_file, "'", "'\\''")}'"]
  ))
  q_region = "'${replace(var.region, "'", "'\\''")}'"
  q_extra = join(" ", concat(
    ["--var", "'pg_major=${replace(var.postgres_major, "'", "'\\''")}'"],
    [for a in var.stagehand_args : "'${replace(a, "'", "'\\''")}'"]
  ))

  # On the AMI, the instance, its volumes and the snapshots (and the
  # copies); arch is added per source.
  tags = merge(var.extra_tags, {
    postgresVersion = var.postgres_version
    postgresMajor   = var.postgres_major
    sourceSha       = var.git_sha
    stage           = "1"
    stagehandRunId  = var.run_id
    buildRegion     = var.region
  })
}

# One source for both arches: what differs per arch is set in the build
# block's `source` entries below (Packer 1.6.6 refuses an argument set in
# both places).
source "amazon-ebs" "base" {
  region = var.region
  launch_block_device_mappings {
    device_name           = var.root_device_name
    volume_size           = var.root_volume_size
    volume_type           = var.volume_type
    iops                  = var.volume_iops
    throughput            = var.volume_throughput
    encrypted             = var.encrypt_boot
    kms_key_id            = var.kms_key_id
    delete_on_termination = true
  }

  subnet_id = var.subnet_id
  dynamic "subnet_filter" {
    for_each = var.subnet_id == "" && length(var.subnet_filter) > 0 ? [var.subnet_filter] : []
    content {
      filters   = subnet_filter.value
      most_free = true
    }
  }
  security_group_ids                    = var.security_group_ids
  temporary_security_group_source_cidrs = var.temporary_security_group_source_cidrs
  associate_public_ip_address           = var.associate_public_ip_address
  iam_instance_profile                  = var.iam_instance_profile

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_interface        = var.ssh_interface
  session_manager_port = var.session_manager_port
  ssh_timeout          = "10m"
  # libssh2 1.10 cannot sign with rsa-sha2, which OpenSSH 8.8+ requires:
  # Packer's temporary key pair must not be RSA.
  temporary_key_pair_type      = "ed25519"
  ssh_keypair_name             = var.ssh_keypair_name
  ssh_private_key_file         = var.ssh_private_key_file
  ssh_bastion_host             = var.bastion_host
  ssh_bastion_port             = var.bastion_port
  ssh_bastion_username         = local.bastion_user
  ssh_bastion_private_key_file = var.bastion_private_key_file
  ssh_bastion_agent_auth       = var.bastion_host != "" && var.bastion_private_key_file == ""
  ssh_clear_authorized_keys    = true

  ami_regions        = var.ami_regions
  ami_users          = var.ami_users
  ami_groups         = var.ami_groups
  encrypt_boot       = var.encrypt_boot
  kms_key_id         = var.kms_key_id
  region_kms_key_ids = var.region_kms_key_ids

  force_deregister      = var.force_deregister
  force_delete_snapshot = var.force_deregister
}

build {
  source "source.amazon-ebs.base" {
    name          = "x86_64"
    ami_name      = "${local.run_name}-x86_64-stage-1"
    instance_type = var.instance_type["x86_64"]
    source_ami    = lookup(var.source_ami, "x86_64", "")
    dynamic "source_ami_filter" {
      for_each = lookup(var.source_ami, "x86_64", "") == "" ? [1] : []
      content {
        filters = {
          name                = var.source_ami_name["x86_64"]
          architecture        = "x86_64"
          root-device-type    = "ebs"
          virtualization-type = "hvm"
        }
        owners      = var.source_ami_owners
        most_recent = true
      }
    }
    tags            = merge(local.tags, { arch = "x86_64", Name = "${local.run_name}-x86_64-stage-1" })
    snapshot_tags   = merge(local.tags, { arch = "x86_64", Name = "${local.run_name}-x86_64-stage-1" })
    run_tags        = merge(local.tags, { arch = "x86_64", Name = "${local.run_name}-x86_64-stage-1-build" })
    run_volume_tags = merge(local.tags, { arch = "x86_64", Name = "${local.run_name}-x86_64-stage-1-build" })
  }
  source "source.amazon-ebs.base" {
    name          = "arm64"
    ami_name      = "${local.run_name}-arm64-stage-1"
    instance_type = var.instance_type["arm64"]
    source_ami    = lookup(var.source_ami, "arm64", "")
    dynamic "source_ami_filter" {
      for_each = lookup(var.source_ami, "arm64", "") == "" ? [1] : []
      content {
        filters = {
          name                = var.source_ami_name["arm64"]
          architecture        = "arm64"
          root-device-type    = "ebs"
          virtualization-type = "hvm"
        }
        owners      = var.source_ami_owners
        most_recent = true
      }
    }
    tags            = merge(local.tags, { arch = "arm64", Name = "${local.run_name}-arm64-stage-1" })
    snapshot_tags   = merge(local.tags, { arch = "arm64", Name = "${local.run_name}-arm64-stage-1" })
    run_tags        = merge(local.tags, { arch = "arm64", Name = "${local.run_name}-arm64-stage-1-build" })
    run_volume_tags = merge(local.tags, { arch = "arm64", Name = "${local.run_name}-arm64-stage-1-build" })
  }

  # IMDSv2 on the build instance, before stagehand runs: Packer 1.6.6's
  # amazon-ebs has no metadata_options block (it fails validation), so
  # the instance's options are set through the API once it is up. A
  # failure here fails the build before any image is made.
  provisioner "shell-local" {
    inline = [
      var.require_imdsv2 ? "aws ec2 modify-instance-metadata-options --region ${local.q_region} --instance-id '${build.ID}' --http-endpoint enabled --http-tokens required --http-put-response-hop-limit 1 --output text --query InstanceMetadataOptions.HttpTokens" : "echo 'IMDSv2 not required (require_imdsv2 = false)'",
    ]
  }

  # The instance is fresh and its host key unknown in advance: stagehand
  # accepts the key it is shown (recorded in the report; see the README).
  # The key text Packer generated goes into the script Packer writes (a
  # 0700 temp file) and from there into the environment, never on a
  # command line: Packer 1.6.6 puts environment_vars on the /bin/sh -c
  # command line and in PACKER_LOG. build.Host and build.Port are used
  # as Packer gives them: with ssh_interface = "session_manager" they are
  # the local end of the tunnel.
  provisioner "shell-local" {
    inline = [
      "STAGEHAND_SSH_KEY=$(cat <<'STAGEHAND_KEY_EOF'\n${build.SSHPrivateKey}\nSTAGEHAND_KEY_EOF\n)",
      "export STAGEHAND_SSH_KEY",
      "exec ${local.provision} --stagehand ${local.q_stagehand} --manifest ${local.q_manifest} --report '${local.e_run_dir}-${source.name}/stage1' --host '${build.Host}' --port '${build.Port}' --user '${build.User}' --key-file ${local.q_key_file} --accept-new-host-key ${local.bastion_args} -- ${local.q_extra}",
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
        git_sha             = var.git_sha
        run_id              = var.run_id
        target_system       = try(jsondecode(file("${local.run_dir}-${source.name}/stage1/results.json")).target.system, "")
        stage1_manifest     = var.stage1_manifest
        stage1_report       = "${local.run_dir}-${source.name}/stage1"
        stage1_status       = try(jsondecode(file("${local.run_dir}-${source.name}/stage1/results.json")).status, "missing")
        stage1_closure_root = try(jsondecode(file("${local.run_dir}-${source.name}/stage1/results.json")).closure.root, "")
      }
    }
  }
}
