# /etc/profile.d/ragsweep.sh in the image (Dockerfile). A login shell (`bash -lc`, as KubeRay v1.3 starts every Ray
# container) reads Debian's /etc/profile, which resets PATH for non-root users and drops the image's ENV PATH; this
# puts the project's environment back in front, once.
case ":$PATH:" in
  *:/opt/ragsweep/.venv/bin:*) ;;
  *) PATH="/opt/ragsweep/.venv/bin:$PATH"; export PATH ;;
esac
