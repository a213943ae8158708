"""Training ray samplers: the residual (INT) sampler and nerfstudio's uniform sampler with a mask fix.

- :mod:`~nid_nerf.sampling.schedules`: the ratio and refresh schedules (pure functions of the step);
- :mod:`~nid_nerf.sampling.residual_map`: the float16 residual per training pixel or cell;
- :mod:`~nid_nerf.sampling.masked_sampler`: uniform draws inside masks, for one image or many;
- :mod:`~nid_nerf.sampling.residual_sampler`: picks rays where the residual is largest;
- :mod:`~nid_nerf.sampling.previews`: tensorboard images of the map and of the picked pixels.
"""
