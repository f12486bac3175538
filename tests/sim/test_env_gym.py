"""`TLA/PegInHole-v0` meets the Gymnasium / LeRobot gym-env conventions: obs_type layouts that pass
`check_env`, `info["is_success"]`, `task_description`, `max_episode_steps` and vector envs."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import tla.sim.env  # noqa: F401  (registers TLA/PegInHole-v0)
from tla.config import apply_overrides
from tla.data.text import instruction
from tla.sim import SimConfig
from tla.sim.env import OBS_TYPES, PegInHoleEnv

ENV_ID = "TLA/PegInHole-v0"
TINY = apply_overrides(SimConfig(), ["render.height=12", "render.width=16"])
FRAME_NAMES = [f"{pad}_t{t}" for pad in ("left", "right") for t in range(4)]
# check_env's advice, not failures: the action space is in mm/deg, and the privileged pose error is unbounded
pytestmark = pytest.mark.filterwarnings("ignore:.*symmetric and normalized space",
                                        "ignore:.*observation space m.* value is -?infinity")


def _frames_of(obs) -> np.ndarray:
    """The (8, H, W, 3) frames of an observation of any obs_type."""
    return obs if isinstance(obs, np.ndarray) else np.stack([obs["pixels"][k] for k in FRAME_NAMES])


@pytest.mark.parametrize("obs_type", OBS_TYPES)
def test_every_obs_type_passes_check_env_and_its_space_holds_the_observations(obs_type):
    env = gym.make(ENV_ID, sim_config=TINY, obs_type=obs_type)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=7)
    assert env.observation_space.contains(obs) and info["is_success"] is False
    obs, *_ = env.step(np.array([0.1, 0.0, 0.0], np.float32))
    assert env.observation_space.contains(obs)
    if obs_type != "frames":  # LeRobot's layout: {"pixels": {camera: HxWx3}} -> observation.images.<camera>
        assert sorted(obs["pixels"]) == sorted(FRAME_NAMES) and obs["pixels"]["left_t0"].shape == (12, 16, 3)


def test_obs_types_show_the_same_frames_and_environment_state_is_the_true_error():
    frames_env = PegInHoleEnv(TINY)
    state_env = PegInHoleEnv(TINY, obs_type="pixels_environment_state")
    frames, _ = frames_env.reset(seed=3)
    obs, info = state_env.reset(seed=3)
    np.testing.assert_array_equal(_frames_of(obs), frames)  # pixels[left_t0..right_t3] == frames[0..7]
    assert obs["environment_state"].dtype == np.float32
    np.testing.assert_allclose(obs["environment_state"], info["error"], rtol=1e-6)


def test_unknown_obs_type_is_refused():
    with pytest.raises(ValueError, match="unknown obs_type"):
        PegInHoleEnv(TINY, obs_type="state")


def test_is_success_is_true_exactly_on_insertion():
    env = gym.make(ENV_ID, sim_config=TINY, obs_type="pixels_environment_state")
    _, info = env.reset(seed=5)
    assert info["is_success"] is False and not info["inserted"]
    _, reward, term, trunc, info = env.step(np.zeros(3, np.float32))  # the same colliding pose again
    assert info["is_success"] is False and not term and reward == 0.0
    _, reward, term, trunc, info = env.step(-info["error"])  # the true-error correction inserts
    assert info["is_success"] is True and info["inserted"] and term and not trunc and reward == 1.0


def test_is_success_follows_insertion_on_every_step_of_random_episodes():
    env = gym.make(ENV_ID, observe=False)
    env.action_space.seed(0)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        done = False
        while not done:
            _, reward, term, trunc, info = env.step(env.action_space.sample() * 0.3)
            assert info["is_success"] == info["inserted"] == term == (reward == 1.0)
            done = term or trunc


def test_max_episode_steps_matches_the_envs_own_truncation():
    env = gym.make(ENV_ID, observe=False)
    max_attempts = SimConfig().max_attempts
    assert env.spec.max_episode_steps == max_attempts - 1  # reset makes the first attempt
    env.reset(seed=0)
    for k in range(1, max_attempts):
        _, _, term, trunc, info = env.step(np.zeros(3, np.float32))
        assert not term and not info["is_success"] and trunc == (k == max_attempts - 1)
    assert info["attempts"] == max_attempts


def test_task_description_is_the_instruction_for_the_shape():
    env = gym.make(ENV_ID, observe=False, shape="hexagon")
    _, info = env.reset(seed=0)
    assert env.unwrapped.task_description == info["task_description"] == instruction("hexagon")
    _, info = env.reset(seed=0, options={"shape": "round"})
    assert env.unwrapped.task_description == env.unwrapped.task == instruction("round")
    assert env.step(np.zeros(3, np.float32))[-1]["task_description"] == instruction("round")


def _check_vector_env(envs):
    """Two envs: reset, then the true-error correction inserts in both; is_success is in the vector infos."""
    obs, info = envs.reset(seed=[1, 2])
    assert envs.observation_space.contains(obs) and info["is_success"].tolist() == [False, False]
    assert obs["pixels"]["right_t3"].shape == (2, 12, 16, 3)
    obs, reward, term, _, info = envs.step(-obs["environment_state"])
    assert info["is_success"].tolist() == [True, True] and term.all() and reward.tolist() == [1.0, 1.0]
    assert list(envs.call("task_description")) == [instruction("square")] * 2
    envs.close()


def test_make_vec_sync_reports_is_success():
    _check_vector_env(gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", sim_config=TINY,
                                   obs_type="pixels_environment_state"))


@pytest.mark.slow  # two spawned interpreters: seconds
def test_make_vec_async_reports_is_success():
    # spawned workers: forking a process whose BLAS / OpenMP threads hold a lock can hang (tla.eval.closed_loop)
    _check_vector_env(gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="async", vector_kwargs={"context": "spawn"},
                                   sim_config=TINY, obs_type="pixels_environment_state"))
