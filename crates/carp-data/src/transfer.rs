//! The transfer data sets the CARP release evaluates with k-NN, k-means and linear probes
//! (`evaluations/knn/eval_knn_*.py`, `evaluations/kmeans/*`), read from the layouts
//! torchvision's dataset classes expect under one root folder, with their official splits.
//!
//! | [`TransferSet`] | folder under the root | train / test split |
//! |---|---|---|
//! | Flowers-102 | `flowers-102/` (`jpg/`, `imagelabels.mat`, `setid.mat`) | `trnid` / `tstid` |
//! | Oxford-IIIT Pets | `oxford-iiit-pet/` (`images/`, `annotations/{trainval,test}.txt`) | trainval / test |
//! | DTD | `dtd/dtd/` (`images/`, `labels/{train,test}1.txt`) | train1 / test1 |
//! | Food-101 | `food-101/` (`images/`, `meta/{train,test}.json`) | train / test |
//! | FGVC-Aircraft | `fgvc-aircraft-2013b/data/` (`variants.txt`, `images_variant_{trainval,test}.txt`) | trainval / test |
//! | Stanford Cars | `stanford_cars/` (`devkit/cars_meta.mat`, `devkit/cars_train_annos.mat`, `cars_test_annos_withlabels.mat`) | train / test |
//! | GTSRB | `gtsrb/` (`GTSRB/Training/<class>/*.ppm`, `GTSRB/Final_Test/Images`, `GT-final_test.csv`) | train / test |
//! | Country211 | `country211/{train,test}/<country>/` | train / test |
//!
//! These are the splits the release passes (`split='train'` / `'trainval'` / `'test'`, DTD
//! partition 1, aircraft variants). A missing or malformed split file is
//! [`DataError::SplitFile`] naming the file.

use crate::labelled::LabelledFiles;
use crate::{dtd, fgvc_aircraft, flowers102, food101, gtsrb, oxford_pets, stanford_cars};
use crate::{DataError, Dataset, ImageFolder};
use std::path::Path;

/// A transfer data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferSet {
    /// Oxford Flowers-102.
    Flowers102,
    /// Oxford-IIIT Pets (37 breeds).
    OxfordPets,
    /// Describable Textures, partition 1.
    Dtd,
    /// Food-101.
    Food101,
    /// FGVC-Aircraft, 100 variants.
    FgvcAircraft,
    /// Stanford Cars.
    StanfordCars,
    /// German Traffic Sign Recognition Benchmark.
    Gtsrb,
    /// Country211 (CLIP's YFCC100M subset).
    Country211,
}

/// Which half of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The split a classifier or memory bank is fitted on.
    Train,
    /// The split it is evaluated on.
    Test,
}

impl TransferSet {
    /// Every transfer set, in the paper's order.
    pub const ALL: [TransferSet; 8] = [
        Self::Flowers102,
        Self::OxfordPets,
        Self::Dtd,
        Self::Food101,
        Self::FgvcAircraft,
        Self::StanfordCars,
        Self::Gtsrb,
        Self::Country211,
    ];

    /// Short name (`flowers102`, `pets`, `dtd`, `food101`, `aircraft`, `cars`, `gtsrb`,
    /// `country211`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Flowers102 => "flowers102",
            Self::OxfordPets => "pets",
            Self::Dtd => "dtd",
            Self::Food101 => "food101",
            Self::FgvcAircraft => "aircraft",
            Self::StanfordCars => "cars",
            Self::Gtsrb => "gtsrb",
            Self::Country211 => "country211",
        }
    }

    /// Parses [`TransferSet::name`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The folder under the data root whose presence means the data set is there.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Flowers102 => "flowers-102",
            Self::OxfordPets => "oxford-iiit-pet",
            Self::Dtd => "dtd",
            Self::Food101 => "food-101",
            Self::FgvcAircraft => "fgvc-aircraft-2013b",
            Self::StanfordCars => "stanford_cars",
            Self::Gtsrb => "gtsrb",
            Self::Country211 => "country211",
        }
    }

    /// Opens one split from the data `root` (the folder holding [`TransferSet::folder`]).
    ///
    /// # Errors
    /// [`DataError::SplitFile`] for a missing or malformed split or label file,
    /// [`DataError::MissingDir`] and the other folder errors for image folders.
    pub fn open(self, root: &Path, split: Split) -> Result<LabelledFiles, DataError> {
        let base = root.join(self.folder());
        match self {
            Self::Flowers102 => flowers102::open(&base, split),
            Self::OxfordPets => oxford_pets::open(&base, split),
            Self::Dtd => dtd::open(&base, split),
            Self::Food101 => food101::open(&base, split),
            Self::FgvcAircraft => fgvc_aircraft::open(&base, split),
            Self::StanfordCars => stanford_cars::open(&base, split),
            Self::Gtsrb => gtsrb::open(&base, split),
            Self::Country211 => {
                let dir = base.join(if split == Split::Train {
                    "train"
                } else {
                    "test"
                });
                folder_as_labelled(&ImageFolder::open(&dir)?, "Country211")
            }
        }
    }
}

/// An [`ImageFolder`] as [`LabelledFiles`].
pub(crate) fn folder_as_labelled(f: &ImageFolder, what: &str) -> Result<LabelledFiles, DataError> {
    let paths = (0..f.len()).map(|i| f.path(i).to_path_buf()).collect();
    let labels = (0..f.len()).map(|i| f.label(i).unwrap_or(0)).collect();
    Ok(LabelledFiles::new(
        format!("{what} {}", f.root().display()),
        paths,
        labels,
        f.classes().to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matfile::tests::{MatWriter, W};
    use std::fs;
    use std::path::PathBuf;

    fn img(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(3, 2, image::Rgb([200, 10, 10]))
            .save_with_format(path, image::ImageFormat::Png)
            .unwrap();
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn names(set: &LabelledFiles, base: &Path) -> Vec<String> {
        (0..set.len())
            .map(|i| {
                set.path(i)
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    /// Every reader on a miniature of its published layout: files, labels, classes, and that
    /// the first image decodes.
    #[test]
    fn each_reader_reads_its_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let check = |set: TransferSet,
                     split,
                     want_files: &[&str],
                     want_labels: &[usize],
                     classes: usize| {
            let s = set.open(root, split).unwrap();
            let base = root.join(set.folder());
            assert_eq!(names(&s, &base), want_files, "{set:?} {split:?}");
            assert_eq!(s.labels(), want_labels, "{set:?} {split:?}");
            assert_eq!(s.num_classes(), classes, "{set:?} {split:?}");
            for f in want_files {
                img(&base.join(f));
            }
            assert_eq!(s.get(0).unwrap().dimensions(), (3, 2));
        };

        // Flowers-102: ids into imagelabels.mat (1-based labels).
        let fl = root.join("flowers-102");
        fs::create_dir_all(&fl).unwrap();
        MatWriter::new()
            .var("trnid", W::Doubles(&[2.0, 4.0]))
            .var("valid", W::Doubles(&[1.0]))
            .var("tstid", W::Doubles(&[3.0]))
            .write(&fl.join("setid.mat"));
        MatWriter::new()
            .var("labels", W::Doubles(&[5.0, 1.0, 102.0, 1.0]))
            .write(&fl.join("imagelabels.mat"));
        check(
            TransferSet::Flowers102,
            Split::Train,
            &["jpg/image_00002.jpg", "jpg/image_00004.jpg"],
            &[0, 0],
            102,
        );
        check(
            TransferSet::Flowers102,
            Split::Test,
            &["jpg/image_00003.jpg"],
            &[101],
            102,
        );

        // Oxford-IIIT Pets.
        write(
            &root.join("oxford-iiit-pet/annotations/trainval.txt"),
            "Abyssinian_100 1 1 1\namerican_bulldog_10 2 2 1\n",
        );
        write(
            &root.join("oxford-iiit-pet/annotations/test.txt"),
            "american_bulldog_7 2 2 1\n",
        );
        check(
            TransferSet::OxfordPets,
            Split::Train,
            &[
                "images/Abyssinian_100.jpg",
                "images/american_bulldog_10.jpg",
            ],
            &[0, 1],
            2,
        );
        let pets = TransferSet::OxfordPets.open(root, Split::Train).unwrap();
        assert_eq!(pets.classes(), ["Abyssinian", "American Bulldog"]);
        check(
            TransferSet::OxfordPets,
            Split::Test,
            &["images/american_bulldog_7.jpg"],
            &[1],
            2,
        );

        // DTD partition 1: classes sorted from the split file.
        write(
            &root.join("dtd/dtd/labels/train1.txt"),
            "zigzagged/z_1.jpg\nbanded/b_2.jpg\n",
        );
        write(&root.join("dtd/dtd/labels/test1.txt"), "banded/b_9.jpg\n");
        check(
            TransferSet::Dtd,
            Split::Train,
            &["dtd/images/zigzagged/z_1.jpg", "dtd/images/banded/b_2.jpg"],
            &[1, 0],
            2,
        );
        check(
            TransferSet::Dtd,
            Split::Test,
            &["dtd/images/banded/b_9.jpg"],
            &[0],
            1,
        );

        // Food-101.
        write(
            &root.join("food-101/meta/train.json"),
            r#"{"apple_pie": ["apple_pie/1"], "baklava": ["baklava/2", "baklava/3"]}"#,
        );
        write(
            &root.join("food-101/meta/test.json"),
            r#"{"apple_pie": [], "baklava": ["baklava/4"]}"#,
        );
        check(
            TransferSet::Food101,
            Split::Train,
            &[
                "images/apple_pie/1.jpg",
                "images/baklava/2.jpg",
                "images/baklava/3.jpg",
            ],
            &[0, 1, 1],
            2,
        );
        check(
            TransferSet::Food101,
            Split::Test,
            &["images/baklava/4.jpg"],
            &[1],
            2,
        );

        // FGVC-Aircraft: variant names with spaces.
        write(
            &root.join("fgvc-aircraft-2013b/data/variants.txt"),
            "707-320\nA300B4\nCessna 172\n",
        );
        write(
            &root.join("fgvc-aircraft-2013b/data/images_variant_trainval.txt"),
            "1025794 Cessna 172\n0056978 707-320\n",
        );
        write(
            &root.join("fgvc-aircraft-2013b/data/images_variant_test.txt"),
            "1514522 A300B4\n",
        );
        check(
            TransferSet::FgvcAircraft,
            Split::Train,
            &["data/images/1025794.jpg", "data/images/0056978.jpg"],
            &[2, 0],
            3,
        );
        check(
            TransferSet::FgvcAircraft,
            Split::Test,
            &["data/images/1514522.jpg"],
            &[1],
            3,
        );

        // Stanford Cars (.mat annotations).
        let cars = root.join("stanford_cars");
        fs::create_dir_all(cars.join("devkit")).unwrap();
        MatWriter::new()
            .var(
                "class_names",
                W::Cell(vec![
                    W::Str("AM General Hummer SUV 2000"),
                    W::Str("Acura RL Sedan 2012"),
                ]),
            )
            .write(&cars.join("devkit/cars_meta.mat"));
        let annos = |entries: Vec<(f64, &'static str)>| {
            W::Struct(
                vec!["bbox_x1", "class", "fname"],
                entries
                    .into_iter()
                    .map(|(c, f)| {
                        vec![
                            W::Doubles(&[1.0]),
                            W::Doubles(if c == 1.0 { &[1.0] } else { &[2.0] }),
                            W::Str(f),
                        ]
                    })
                    .collect(),
            )
        };
        MatWriter::new()
            .var(
                "annotations",
                annos(vec![(2.0, "00001.jpg"), (1.0, "00002.jpg")]),
            )
            .write(&cars.join("devkit/cars_train_annos.mat"));
        MatWriter::new()
            .var("annotations", annos(vec![(1.0, "00001.jpg")]))
            .write(&cars.join("cars_test_annos_withlabels.mat"));
        check(
            TransferSet::StanfordCars,
            Split::Train,
            &["cars_train/00001.jpg", "cars_train/00002.jpg"],
            &[1, 0],
            2,
        );
        check(
            TransferSet::StanfordCars,
            Split::Test,
            &["cars_test/00001.jpg"],
            &[0],
            2,
        );

        // GTSRB: .ppm class folders for train, a CSV for test.
        for (class, file) in [("00000", "00000_00000.ppm"), ("00002", "00001_00001.ppm")] {
            let p = root.join("gtsrb/GTSRB/Training").join(class).join(file);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            image::RgbImage::from_pixel(3, 2, image::Rgb([1, 2, 3]))
                .save_with_format(&p, image::ImageFormat::Pnm)
                .unwrap();
        }
        write(
            &root.join("gtsrb/GTSRB/Training/00000/GT-00000.csv"),
            "not an image",
        );
        write(
            &root.join("gtsrb/GT-final_test.csv"),
            "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n00000.ppm;3;2;0;0;3;2;16\n",
        );
        let g = TransferSet::Gtsrb.open(root, Split::Train).unwrap();
        assert_eq!(g.labels(), &[0, 1]);
        assert_eq!(g.get(1).unwrap().get_pixel(0, 0), &image::Rgb([1, 2, 3]));
        let p = root.join("gtsrb/GTSRB/Final_Test/Images/00000.ppm");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(3, 2, image::Rgb([9, 9, 9]))
            .save_with_format(&p, image::ImageFormat::Pnm)
            .unwrap();
        let g = TransferSet::Gtsrb.open(root, Split::Test).unwrap();
        assert_eq!((g.labels(), g.num_classes()), (&[16usize][..], 43));
        assert_eq!(g.get(0).unwrap().dimensions(), (3, 2));

        // Country211: class folders per split.
        img(&root.join("country211/train/AD/1.jpg"));
        img(&root.join("country211/train/AE/2.jpg"));
        img(&root.join("country211/test/AE/3.jpg"));
        check(
            TransferSet::Country211,
            Split::Train,
            &["train/AD/1.jpg", "train/AE/2.jpg"],
            &[0, 1],
            2,
        );
        check(
            TransferSet::Country211,
            Split::Test,
            &["test/AE/3.jpg"],
            &[0],
            1,
        );
    }

    /// A missing or malformed split file is an error naming the file.
    #[test]
    fn bad_split_files_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let err = |set: TransferSet| set.open(root, Split::Train).unwrap_err().to_string();
        let e = err(TransferSet::Dtd);
        assert!(
            e.contains("train1.txt") && e.contains("missing split file"),
            "{e}"
        );
        write(
            &root.join("dtd/dtd/labels/train1.txt"),
            "banded/b.jpg\nno-slash-here\n",
        );
        let e = err(TransferSet::Dtd);
        assert!(e.contains("train1.txt") && e.contains("line 2"), "{e}");
        write(
            &root.join("oxford-iiit-pet/annotations/trainval.txt"),
            "Abyssinian_1 99 1 1\n",
        );
        let e = err(TransferSet::OxfordPets);
        assert!(
            e.contains("trainval.txt") && e.contains("line 1") && e.contains("99"),
            "{e}"
        );
        write(&root.join("food-101/meta/train.json"), "[1, 2]");
        let e = err(TransferSet::Food101);
        assert!(e.contains("train.json") && e.contains("JSON"), "{e}");
        write(&root.join("fgvc-aircraft-2013b/data/variants.txt"), "A\n");
        write(
            &root.join("fgvc-aircraft-2013b/data/images_variant_trainval.txt"),
            "1 B\n",
        );
        let e = err(TransferSet::FgvcAircraft);
        assert!(
            e.contains("images_variant_trainval.txt") && e.contains("`B`"),
            "{e}"
        );
        write(&root.join("flowers-102/setid.mat"), "garbage");
        let e = err(TransferSet::Flowers102);
        assert!(e.contains("setid.mat"), "{e}");
        write(&root.join("stanford_cars/devkit/cars_meta.mat"), "");
        let e = err(TransferSet::StanfordCars);
        assert!(e.contains("cars_meta.mat"), "{e}");
        write(
            &root.join("gtsrb/GT-final_test.csv"),
            "Filename;ClassId\nx.ppm;seven\n",
        );
        let e = TransferSet::Gtsrb
            .open(root, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("GT-final_test.csv") && e.contains("line 2"),
            "{e}"
        );
        let _: PathBuf = root.to_path_buf();
    }

    /// VOC07: the first class file fixes the order; difficult is 0; a stray id names its file.
    #[test]
    fn voc07_reads_the_class_files() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("VOCdevkit/VOC2007/ImageSets/Main");
        for (c, class) in crate::VOC_CLASSES.iter().enumerate() {
            let text = match c {
                0 => "000005 -1\n000007  1\n".to_string(),
                1 => "000005  0\n000007 -1\n".to_string(),
                _ => "000005 -1\n000007 -1\n".to_string(),
            };
            write(&main.join(format!("{class}_test.txt")), &text);
        }
        let v = crate::Voc07::open(dir.path(), "test").unwrap();
        assert_eq!(v.ids(), ["000005", "000007"]);
        assert_eq!(
            (v.targets()[1][0], v.targets()[0][1], v.targets()[0][0]),
            (1, 0, -1)
        );
        assert!(v
            .path(0)
            .ends_with("VOCdevkit/VOC2007/JPEGImages/000005.jpg"));
        write(&main.join("bird_test.txt"), "000005 -1\n000009 1\n");
        let e = crate::Voc07::open(dir.path(), "test")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bird_test.txt") && e.contains("000009"), "{e}");
        write(&main.join("bird_test.txt"), "000005 2\n");
        let e = crate::Voc07::open(dir.path(), "test")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bird_test.txt") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn copydays_blocks_and_positives() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "original/200000.jpg",
            "original/200100.jpg",
            "strong/200001.jpg",
            "strong/200002.jpg",
            "strong/200101.jpg",
            "jpegqual/50/200000.jpg",
            "jpegqual/50/200100.jpg",
            "distract/a.png",
            "distract/b.JPG",
        ] {
            img(&root.join(f));
        }
        let blocks = crate::open_copydays(root).unwrap();
        let names: Vec<&str> = blocks.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["original", "strong", "jpegqual/50"]);
        assert_eq!(blocks[1].positives, vec![vec![0], vec![0], vec![1]]);
        assert_eq!(blocks[2].positives, vec![vec![0], vec![1]]);
        // Extensions are case-sensitive, as the release's is_image_file.
        assert_eq!(
            crate::list_image_files(&root.join("distract"))
                .unwrap()
                .len(),
            1
        );
        img(&root.join("strong/300001.jpg"));
        let e = crate::open_copydays(root).unwrap_err().to_string();
        assert!(e.contains("300001.jpg") && e.contains("`3000`"), "{e}");
    }
}
